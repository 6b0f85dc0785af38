//! Downloading a pinned base from a real HTTP server on loopback: resume, pin check, errors.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use kolm::download::fetch_url;
use kolm::progress::Progress;

/// A one-file HTTP/1.1 server. `cut_first` closes the first response after that many bytes.
/// Records every Range header it sees.
struct Server {
    url: String,
    ranges: Arc<Mutex<Vec<Option<String>>>>,
}

fn serve(body: Vec<u8>, cut_first: Option<usize>, status: u16, requests: usize) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/owner/repo/resolve/main/model.gguf",
        listener.local_addr().unwrap()
    );
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let seen = ranges.clone();
    std::thread::spawn(move || {
        for (i, conn) in listener.incoming().take(requests).enumerate() {
            let mut conn = conn.unwrap();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut range = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    range = Some(v.trim().trim_end_matches('-').to_string());
                }
            }
            seen.lock().unwrap().push(range.clone());
            if status != 200 {
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} Nope\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                continue;
            }
            let start: usize = range.as_deref().map(|r| r.parse().unwrap()).unwrap_or(0);
            let part = &body[start..];
            let head = if start > 0 {
                format!("HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nConnection: close\r\n\r\n", part.len(), body.len() - 1, body.len())
            } else {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    part.len()
                )
            };
            conn.write_all(head.as_bytes()).unwrap();
            let n = if i == 0 {
                cut_first.unwrap_or(part.len())
            } else {
                part.len()
            };
            let _ = conn.write_all(&part[..n]);
            let _ = conn.flush();
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
    });
    Server { url, ranges }
}

fn model() -> (Vec<u8>, String) {
    let b = kolm::gguf::tiny::tiny_model("llama", 9, kolm::gguf::tiny::Quant::F32);
    let sha = kolm::digest::sha256(&b);
    (b, sha)
}

#[test]
fn a_cut_download_resumes_with_a_range_request() {
    let (body, sha) = model();
    let s = serve(body.clone(), Some(body.len() / 3), 200, 2);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("models/m.gguf");
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let first = fetch_url(
        "hf://owner/repo/model.gguf",
        &s.url,
        &sha,
        &dest,
        &Progress::hidden(),
    );
    let err = first.unwrap_err().to_string();
    assert!(
        err.contains("connection lost") || err.contains("received"),
        "{err}"
    );
    assert!(
        !dest.exists(),
        "nothing at the final name until it is whole and verified"
    );
    fetch_url(
        "hf://owner/repo/model.gguf",
        &s.url,
        &sha,
        &dest,
        &Progress::hidden(),
    )
    .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    let ranges = s.ranges.lock().unwrap().clone();
    assert_eq!(ranges[0], None);
    assert_eq!(
        ranges[1].as_deref(),
        Some((body.len() / 3).to_string().as_str()),
        "resumed where it stopped"
    );
}

#[test]
fn a_download_that_does_not_match_the_pin_is_refused_and_removed() {
    let (body, _) = model();
    let s = serve(body, None, 200, 1);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("m.gguf");
    let err = fetch_url(
        "hf://owner/repo/model.gguf",
        &s.url,
        &"0".repeat(64),
        &dest,
        &Progress::hidden(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("not the pinned"), "{err}");
    assert!(!dest.exists());
    assert!(
        std::fs::read_dir(dir.path().join("partial"))
            .unwrap()
            .next()
            .is_none(),
        "the bad partial is gone"
    );
}

#[test]
fn http_errors_say_what_to_do() {
    let s = serve(vec![], None, 404, 1);
    let dir = tempfile::tempdir().unwrap();
    let err = fetch_url(
        "hf://owner/repo/model.gguf",
        &s.url,
        &"0".repeat(64),
        &dir.path().join("m"),
        &Progress::hidden(),
    )
    .unwrap_err();
    let shown = format!("{:?}", miette::Report::new(err));
    assert!(shown.contains("HTTP 404"), "{shown}");
    assert!(
        shown.contains("check the owner, repository and file name"),
        "{shown}"
    );
}

#[test]
fn a_dead_network_is_a_clear_error() {
    // A port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let err = fetch_url(
        "hf://o/r/m.gguf",
        &format!("http://127.0.0.1:{port}/o/r/resolve/main/m.gguf"),
        &"0".repeat(64),
        &dir.path().join("m"),
        &Progress::hidden(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("download of `hf://o/r/m.gguf` failed"),
        "{err}"
    );
}
