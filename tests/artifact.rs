//! The RS-1 artifact: layout, readability by other zip tools, and fail-closed verification.

mod support;

use std::io::Write;
use std::path::Path;

use kolm::artifact::verify::{self, SignatureState, VerifyOptions};
use kolm::artifact::ENTRIES;
use support::*;

fn built() -> (Project, Vec<u8>) {
    let p = Project::new(&kolmfile_text(""));
    p.build();
    let bytes = std::fs::read(p.artifact()).unwrap();
    (p, bytes)
}

fn verify_bytes(bytes: &[u8]) -> Result<verify::Verified, String> {
    init_env();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.kolm");
    std::fs::write(&p, bytes).unwrap();
    verify::verify(&p, &VerifyOptions::default(), &|_| {}).map_err(|e| e.to_string())
}

#[test]
fn a_fresh_artifact_verifies() {
    let (_p, bytes) = built();
    let v = verify_bytes(&bytes).unwrap();
    assert_eq!(v.signature, SignatureState::Verified);
    assert_eq!(v.entries.len(), 5);
}

#[test]
fn any_zip_tool_reads_it_and_the_model_is_stored_and_aligned() {
    let (p, _) = built();
    let script = r#"
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
names = [i.filename for i in z.infolist()]
assert names == ["model.gguf","lora.bin","recipes.json","index.sqlite-vec","tests.jsonl","manifest.json","signature.sig"], names
m = z.getinfo("model.gguf")
assert m.compress_type == zipfile.ZIP_STORED
with open(sys.argv[1], "rb") as f:
    f.seek(m.header_offset + 26)
    n, e = int.from_bytes(f.read(2), "little"), int.from_bytes(f.read(2), "little")
start = m.header_offset + 30 + n + e
assert start % 4096 == 0, start
for i in z.infolist():
    assert i.date_time == (1980, 1, 1, 0, 0, 0), i.date_time
    assert i.comment == b""
    assert (i.external_attr >> 16) == 0o100644, oct(i.external_attr >> 16)
assert z.comment == b""
assert z.testzip() is None
print("ok")
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(p.artifact())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The zip crate reads it too.
    let mut z = zip::ZipArchive::new(std::fs::File::open(p.artifact()).unwrap()).unwrap();
    assert_eq!(z.len(), 7);
    let mut manifest = String::new();
    std::io::Read::read_to_string(&mut z.by_name("manifest.json").unwrap(), &mut manifest).unwrap();
    assert!(
        manifest.starts_with("{\"base_model\":"),
        "canonical JSON, keys sorted"
    );
}

#[test]
fn manifest_declares_every_payload_entry() {
    let (p, _) = built();
    let o = verify::open(&p.artifact()).unwrap();
    let names: Vec<&str> = o.manifest.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ENTRIES[..5]);
    assert_eq!(o.manifest.spec, "rs-1-manifest");
    assert_eq!(o.manifest.base_model.architecture, "llama");
    assert!(
        o.manifest.created_at.is_none(),
        "no wall-clock time unless pinned"
    );
    assert_eq!(o.manifest.tests.count, 1);
    let sig: serde_json::Value =
        serde_json::from_slice(&kolm::artifact::sign::to_bytes(&o.signature)).unwrap();
    assert_eq!(sig["alg"], "hmac-sha256");
    assert_eq!(sig["mac"].as_str().unwrap().len(), 64);
}

/// Flips one byte in the middle of an entry's data; with `fix_crc`, also rewrites the CRC in
/// both headers, as a careful attacker would.
fn flip(bytes: &[u8], e: &kolm::artifact::zipread::Entry, fix_crc: bool) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let at = (e.data_offset + e.compressed / 2) as usize;
    b[at] ^= 0x01;
    if fix_crc {
        assert_eq!(e.method, kolm::artifact::zipwrite::Method::Stored);
        let data = &b[e.data_offset as usize..(e.data_offset + e.compressed) as usize];
        let crc = crc32fast::hash(data).to_le_bytes();
        let lh = e.header_offset as usize;
        b[lh + 14..lh + 18].copy_from_slice(&crc);
        // The central directory entry: find it by its name after the data.
        let name = e.name.as_bytes();
        let cd = (0..b.len() - 46)
            .rev()
            .find(|&i| {
                b[i..i + 4] == [0x50, 0x4b, 0x01, 0x02] && &b[i + 46..i + 46 + name.len()] == name
            })
            .unwrap();
        b[cd + 16..cd + 20].copy_from_slice(&crc);
    }
    b
}

#[test]
fn flipping_one_byte_in_any_entry_fails_verification() {
    let (p, bytes) = built();
    let o = verify::open(&p.artifact()).unwrap();
    for e in &o.entries {
        let err = verify_bytes(&flip(&bytes, e, false))
            .expect_err(&format!("flipped byte in {} must fail", e.name));
        assert!(
            err.contains(&format!("`{}`", e.name)) || err.contains("signature"),
            "{}: {err}",
            e.name
        );
        if e.method == kolm::artifact::zipwrite::Method::Stored {
            // With the CRC patched up, the digests and the signature still catch it.
            let err = verify_bytes(&flip(&bytes, e, true))
                .expect_err(&format!("patched {} must fail", e.name));
            let expected = match e.name.as_str() {
                "manifest.json" => "bad signature".to_string(),
                "signature.sig" => "signature".to_string(),
                n => format!("`{n}` has sha256"),
            };
            assert!(err.contains(&expected), "{}: {err}", e.name);
        }
    }
}

#[test]
fn prepended_and_appended_bytes_are_refused() {
    let (_p, bytes) = built();
    let mut pre = b"MZ\x90\x00".to_vec();
    pre.extend_from_slice(&bytes);
    assert!(verify_bytes(&pre)
        .unwrap_err()
        .contains("precede the first entry"));
    let mut post = bytes.clone();
    post.extend_from_slice(b"trailing");
    assert!(verify_bytes(&post)
        .unwrap_err()
        .contains("follow the end-of-archive record"));
}

#[test]
fn a_truncated_artifact_is_refused() {
    let (_p, bytes) = built();
    for cut in [10, bytes.len() / 2, bytes.len() - 1] {
        let err = verify_bytes(&bytes[..cut]).unwrap_err();
        assert!(
            err.contains("truncated") || err.contains("end-of-archive"),
            "{cut}: {err}"
        );
    }
}

/// Rewrites an artifact with the zip crate: entries (name, bytes) in the given order.
fn rezip(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn entries_of(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut z = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut b).unwrap();
            (f.name().unwrap().to_string(), b)
        })
        .collect()
}

#[test]
fn missing_extra_reordered_and_escaping_entries_are_refused() {
    let (p, _) = built();
    let all = entries_of(&p.artifact());
    let refs: Vec<(&str, Vec<u8>)> = all.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();

    let missing: Vec<_> = refs
        .iter()
        .filter(|(n, _)| *n != "recipes.json")
        .cloned()
        .collect();
    let err = verify_bytes(&rezip(&missing)).unwrap_err();
    assert!(
        err.contains("`recipes.json` is missing") || err.contains("compression"),
        "{err}"
    );

    let mut extra = refs.clone();
    extra.push(("notes.txt", b"hi".to_vec()));
    assert!(verify_bytes(&rezip(&extra))
        .unwrap_err()
        .contains("unexpected entry `notes.txt`"));

    let mut swapped = refs.clone();
    swapped.swap(2, 4);
    let err = verify_bytes(&rezip(&swapped)).unwrap_err();
    assert!(
        err.contains("out of order") || err.contains("compression"),
        "{err}"
    );

    let mut escape = refs.clone();
    escape[2].0 = "../recipes.json";
    assert!(verify_bytes(&rezip(&escape))
        .unwrap_err()
        .contains("escapes"));
}

#[test]
fn a_duplicate_entry_is_refused() {
    let (_p, bytes) = built();
    // `signature.sig` and `manifest.json` have the same length: renaming one to the other in
    // both headers makes a zip with a duplicate name and nothing else wrong.
    let mut b = bytes.clone();
    let mut count = 0;
    for i in 0..b.len() - 13 {
        if &b[i..i + 13] == b"signature.sig" {
            b[i..i + 13].copy_from_slice(b"manifest.json");
            count += 1;
        }
    }
    assert_eq!(count, 2, "local and central header");
    let err = verify_bytes(&b).unwrap_err();
    assert!(err.contains("`manifest.json` appears twice"), "{err}");
}

#[test]
fn a_zip_bomb_cannot_inflate_past_its_declared_size() {
    // A deflated entry whose directory claims 10 bytes but inflates to a megabyte.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.zip");
    let zeros = vec![0u8; 1 << 20];
    let specs = [kolm::artifact::zipwrite::EntrySpec {
        name: "recipes.json",
        method: kolm::artifact::zipwrite::Method::Deflated,
        align: 1,
        source: kolm::artifact::zipwrite::Source::Bytes(&zeros),
    }];
    let mut f = std::fs::File::create(&path).unwrap();
    kolm::artifact::zipwrite::write_zip(&mut f, &path, &specs, None, &|_| {}).unwrap();
    drop(f);
    let mut f = std::fs::File::open(&path).unwrap();
    let len = f.metadata().unwrap().len();
    let mut entries = kolm::artifact::zipread::read_entries(&mut f, len).unwrap();
    entries[0].size = 10;
    let err = kolm::artifact::container::stream_entry(&mut f, &path, &entries[0], 10, |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("inflates past its declared 10 bytes"), "{err}");
}

#[test]
fn a_hostile_adapter_that_does_not_fit_the_base_is_named() {
    let base = kolm::gguf::read_header_from(
        &mut &kolm::gguf::tiny::tiny_model("llama", 1, kolm::gguf::tiny::Quant::F32)[..],
    )
    .unwrap();
    let other = kolm::gguf::read_header_from(
        &mut &kolm::gguf::tiny::tiny_model("qwen2", 1, kolm::gguf::tiny::Quant::F32)[..],
    )
    .unwrap();
    let lora_bytes = kolm::gguf::tiny::zero_lora(&other, &["attn_q".into()], 4, 8.0, 0).unwrap();
    let lora = kolm::gguf::read_header_from(&mut &lora_bytes[..]).unwrap();
    let err = kolm::gguf::adapter::fits(&base, &lora).unwrap_err();
    assert!(err.contains("architecture"), "{err}");
    let good =
        kolm::gguf::tiny::zero_lora(&base, &["attn_q".into(), "ffn_up".into()], 4, 8.0, 0).unwrap();
    kolm::gguf::adapter::fits(
        &base,
        &kolm::gguf::read_header_from(&mut &good[..]).unwrap(),
    )
    .unwrap();
}

#[test]
fn inspect_reads_headers_without_extracting() {
    let (p, _) = built();
    init_env();
    let i = kolm::artifact::inspect::inspect(&p.artifact(), None).unwrap();
    assert_eq!(i.signature, SignatureState::Verified);
    assert!(i
        .model_metadata
        .iter()
        .any(|(k, v)| k == "general.architecture" && v == "\"llama\""));
    assert!(i
        .lora_metadata
        .iter()
        .any(|(k, v)| k == "adapter.type" && v == "\"lora\""));
    let text = kolm::artifact::inspect::render(&i);
    for needle in [
        "model.gguf",
        "signature.sig",
        "k_score",
        "k.accuracy",
        "gate 0.50 passed",
        "verified",
    ] {
        assert!(text.contains(needle), "missing {needle}:\n{text}");
    }
}

#[test]
fn every_header_byte_is_covered() {
    // A byte outside every entry's data (a timestamp in the central directory, the alignment
    // value, an attribute) has no digest of its own: the canonical-layout check catches it.
    let (p, bytes) = built();
    let o = verify::open(&p.artifact()).unwrap();
    let last = o.entries.last().unwrap();
    let cd = (last.data_offset + last.compressed) as usize;
    for at in [12usize, 30 + 10 + 4, cd + 12, cd + 38, bytes.len() - 10] {
        let mut b = bytes.clone();
        b[at] ^= 0x01;
        assert!(verify_bytes(&b).is_err(), "byte {at} changed unnoticed");
    }
}

#[test]
fn consistent_but_unpinned_timestamps_are_refused() {
    // Every header rewritten to the same new time passes the layout check; the manifest does
    // not pin that time, so verification still fails.
    let (p, bytes) = built();
    let mut b = bytes.clone();
    let new_time = 0x6000u16.to_le_bytes();
    for i in 0..b.len() - 4 {
        match b[i..i + 4] {
            [0x50, 0x4b, 0x03, 0x04] => b[i + 10..i + 12].copy_from_slice(&new_time),
            [0x50, 0x4b, 0x01, 0x02] => b[i + 12..i + 14].copy_from_slice(&new_time),
            _ => {}
        }
    }
    let o = verify::open(&p.artifact()).unwrap();
    assert_eq!(o.entries.len(), 7);
    let err = verify_bytes(&b).unwrap_err();
    assert!(
        err.contains("timestamps are not the ones the manifest pins"),
        "{err}"
    );
}

#[test]
fn a_signature_in_a_non_canonical_form_is_refused() {
    let (_p, bytes) = built();
    // `{"alg":` → `{"alg" :` would change the length; swap two bytes of JSON whitespace-free
    // text for an equivalent escape of the same length instead: `a` → `\u0061` is longer, so
    // rewrite the key order, which has the same length.
    let needle = b"{\"alg\":\"hmac-sha256\",\"mac\":\"";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("signature entry");
    let mac: Vec<u8> = bytes[at + needle.len()..at + needle.len() + 64].to_vec();
    let mut reordered = b"{\"mac\":\"".to_vec();
    reordered.extend_from_slice(&mac);
    reordered.extend_from_slice(b"\",\"alg\":\"hmac-sha256\"}");
    let mut b = bytes.clone();
    b[at..at + reordered.len()].copy_from_slice(&reordered);
    // Keep the CRCs right so the structure is sound and only the form differs.
    let crc = crc32fast::hash(&reordered).to_le_bytes();
    let old_crc = crc32fast::hash(&bytes[at..at + reordered.len()]).to_le_bytes();
    for i in 0..b.len() - 4 {
        if b[i..i + 4] == old_crc {
            b[i..i + 4].copy_from_slice(&crc);
        }
    }
    let err = verify_bytes(&b).unwrap_err();
    assert!(err.contains("not in its canonical form"), "{err}");
}

#[test]
fn a_kernel_copied_model_gives_the_same_bytes_as_a_streamed_one() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.gguf");
    std::fs::write(
        &model,
        kolm::gguf::tiny::tiny_model("qwen2", 4, kolm::gguf::tiny::Quant::Q8_0),
    )
    .unwrap();
    let sha = kolm::digest::sha256_file(&model, None).unwrap().0;
    let write = |crc: Option<u32>, name: &str| {
        let out = dir.path().join(name);
        let payload = kolm::artifact::Payload {
            model: &model,
            model_crc32: crc,
            model_sha256: &sha,
            lora: b"lora",
            recipes: b"{}",
            index: b"index",
            tests: b"{}\n",
        };
        kolm::artifact::write(&out, &payload, b"{}", b"{}", None, &|_| {}).unwrap();
        std::fs::read(out).unwrap()
    };
    let crc = kolm::digest::crc32_file(&model).unwrap();
    let streamed = write(None, "streamed.kolm");
    assert_eq!(streamed, write(Some(crc), "copied.kolm"));
    // A wrong CRC handed in is written as is, and any zip reader rejects the entry.
    let wrong = write(Some(crc ^ 1), "wrong.kolm");
    assert_ne!(streamed, wrong);
    let script = "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nprint(z.testzip())";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(dir.path().join("wrong.kolm"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "model.gguf");
}
