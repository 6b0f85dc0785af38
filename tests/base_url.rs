//! The base stage end to end with an `hf://` base served on loopback (its own process: it sets
//! HF_ENDPOINT).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

use support::*;

#[test]
fn an_hf_base_is_downloaded_once_checked_and_reused() {
    let body = kolm::gguf::tiny::tiny_model("llama", 11, kolm::gguf::tiny::Quant::Q8_0);
    let sha = kolm::digest::sha256(&body);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let mut conn = conn.unwrap();
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut first = String::new();
            r.read_line(&mut first).unwrap();
            loop {
                let mut l = String::new();
                if r.read_line(&mut l).unwrap() == 0 || l == "\r\n" {
                    break;
                }
            }
            assert!(
                first.starts_with("GET /acme/tiny/resolve/main/tiny.gguf "),
                "{first}"
            );
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .unwrap();
            conn.write_all(&body).unwrap();
        }
    });
    std::env::set_var("HF_ENDPOINT", &endpoint);
    let text = kolmfile_text("").replace(
        "tiny = { arch = \"llama\", seed = 3 }",
        &format!("url = \"hf://acme/tiny/tiny.gguf\"\nsha256 = \"{sha}\""),
    );
    let p = Project::new(&text);
    p.build();
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(p
        .home
        .path()
        .join(format!("models/sha256-{sha}.gguf"))
        .is_file());
    let o = kolm::artifact::verify::open(&p.artifact()).unwrap();
    assert_eq!(o.manifest.base_model.sha256, sha);
    assert_eq!(o.manifest.base_model.quantization, "Q8_0");
    // Rebuild: nothing downloaded again.
    std::fs::remove_file(p.artifact()).unwrap();
    p.build();
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 1);
    // --airgap refuses a download outright.
    let fresh = tempfile::tempdir().unwrap();
    let err = kolm::executor::build(
        p.kolmfile(),
        kolm::home::Home::at(fresh.path()),
        test_stages(),
        kolm::stages::BuildOptions {
            airgap: true,
            ..Default::default()
        },
        Default::default(),
        kolm::progress::Progress::hidden(),
    )
    .unwrap_err()
    .error;
    assert!(err.to_string().contains("--airgap"), "{err}");
}
