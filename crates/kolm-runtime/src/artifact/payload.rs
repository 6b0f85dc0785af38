//! The payload cross-checks of `kolm verify`: entries whose digests match can still disagree with
//! each other or with the manifest (a sealer bug, or a re-signed artifact). Each check asks the
//! entry's owner: the adapter's fit is [`crate::gguf::adapter::fits`], the index's facts are
//! [`crate::recall::index::facts`]. Nothing here reads the machine's state (no `KOLM_HOME`): the
//! verdict is the same everywhere. Whether this machine's copy of the embedder matches the index
//! is the runtime's question, asked when it loads one.

use std::io::{Read, Seek, SeekFrom};

use super::container::{fail, Opened, TAMPER};
use crate::{Error, Result};

/// Runs every cross-check on a verified artifact; `index` is the index entry's bytes.
pub fn check(f: &mut std::fs::File, o: &Opened, index: &[u8]) -> Result<()> {
    adapter_fits(f, o)?;
    index_fits(o, index)
}

/// Reads the GGUF header of a stored entry in place.
pub fn entry_header(f: &mut std::fs::File, o: &Opened, idx: usize) -> Result<crate::gguf::Header> {
    let e = &o.entries[idx];
    f.seek(SeekFrom::Start(e.data_offset))
        .map_err(|err| Error::io(&o.path, "seek", err))?;
    let mut r = std::io::BufReader::new((&mut *f).take(e.compressed));
    let h = crate::gguf::read_header_from(&mut r)
        .map_err(|err| fail(&o.path, format!("`{}`: {err}", e.name), TAMPER))?;
    crate::gguf::check_extent(&h, e.size)
        .map_err(|err| fail(&o.path, format!("`{}`: {err}", e.name), TAMPER))?;
    Ok(h)
}

/// Every LoRA tensor pair must match the base tensor it adapts (llama.cpp's own checks).
fn adapter_fits(f: &mut std::fs::File, o: &Opened) -> Result<()> {
    let base = entry_header(f, o, 0)?;
    let lora = entry_header(f, o, 1)?;
    crate::gguf::adapter::fits(&base, &lora).map_err(|reason| {
        fail(
            &o.path,
            format!("lora.bin does not fit model.gguf: {reason}"),
            "the adapter was made for another base",
        )
    })
}

/// The index must be the one the manifest describes: its embedder, its dimensions (as recorded
/// and as its vectors are), one vector per chunk.
fn index_fits(o: &Opened, index: &[u8]) -> Result<()> {
    let r = &o.manifest.recall;
    let facts = match crate::recall::index::facts(index) {
        Ok(f) => f,
        Err(e) => {
            return Err(fail(
                &o.path,
                format!("index.sqlite-vec is not a readable kolm index: {e}"),
                TAMPER,
            ))
        }
    };
    let problem = if facts.dimensions != r.dimensions as u64 {
        Some(format!(
            "index.sqlite-vec has {} dimensions but the manifest's embedder has {}",
            facts.dimensions, r.dimensions
        ))
    } else if facts.embedder_sha256 != r.embedder_sha256.clone().unwrap_or_default() {
        Some("index.sqlite-vec was embedded by another embedder than the manifest names".into())
    } else if facts.dimensions > 0 && (facts.vectors != r.chunks || facts.width != facts.dimensions)
    {
        Some(format!(
            "index.sqlite-vec has {} vectors of {} dimensions for {} chunks of {}",
            facts.vectors, facts.width, r.chunks, facts.dimensions
        ))
    } else {
        None
    };
    match problem {
        Some(p) => Err(fail(&o.path, p, TAMPER)),
        None => Ok(()),
    }
}
