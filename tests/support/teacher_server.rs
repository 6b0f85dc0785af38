//! A teacher on loopback: a small HTTP/1.1 server that speaks the OpenAI chat-completions and
//! Anthropic messages APIs, with faults scripted per request (429 with and without Retry-After,
//! 500s, hangs, malformed JSON, bodies cut short, quota and key errors). Hand-written on tokio
//! rather than built on a server framework so that it can misbehave at the byte level: a body
//! cut short is a `content-length` the server never honours.
//!
//! Shared by the teacher tests and the teacher benchmark (`#[path]`-included there).

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// What the server does with one request instead of answering it.
#[derive(Debug, Clone)]
pub enum Fault {
    /// An error status with extra headers and a body.
    Status {
        code: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Waits this long, then answers normally.
    Hang(Duration),
    /// 200 with a body that is not JSON.
    Malformed,
    /// 200 whose body stops halfway (the connection closes).
    Truncated,
}

impl Fault {
    pub fn status(code: u16) -> Fault {
        Fault::Status {
            code,
            headers: vec![],
            body: json!({"error": {"message": format!("scripted {code}"), "type": "server_error"}})
                .to_string(),
        }
    }
    pub fn with_header(self, name: &str, value: &str) -> Fault {
        match self {
            Fault::Status {
                code,
                mut headers,
                body,
            } => {
                headers.push((name.into(), value.into()));
                Fault::Status {
                    code,
                    headers,
                    body,
                }
            }
            other => other,
        }
    }
    pub fn with_body(self, b: Value) -> Fault {
        match self {
            Fault::Status { code, headers, .. } => Fault::Status {
                code,
                headers,
                body: b.to_string(),
            },
            other => other,
        }
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Makes the text of sample `i` for a request body (either API's).
pub type Answerer = dyn Fn(&Value, usize) -> String + Send + Sync;

pub struct State {
    pub faults: Mutex<VecDeque<Fault>>,
    pub seen: Mutex<Vec<Seen>>,
    pub requests: AtomicU64,
    /// Answer one choice whatever `n` asks (as llama.cpp's server and Ollama do).
    pub ignore_n: std::sync::atomic::AtomicBool,
    /// Keep every request for [`Server::seen`]; benchmarks turn it off, so that the server's
    /// growing memory does not weigh on whichever client is being timed.
    pub keep_seen: std::sync::atomic::AtomicBool,
    answer: Box<Answerer>,
}

pub struct Server {
    pub addr: SocketAddr,
    pub state: Arc<State>,
}

impl Server {
    /// Starts a server on a free loopback port, on its own thread and runtime.
    pub fn start(answer: Box<Answerer>) -> Server {
        let state = Arc::new(State {
            faults: Mutex::new(VecDeque::new()),
            seen: Mutex::new(Vec::new()),
            requests: AtomicU64::new(0),
            ignore_n: false.into(),
            keep_seen: true.into(),
            answer,
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let st = state.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                loop {
                    let Ok((sock, _)) = listener.accept().await else {
                        continue;
                    };
                    let _ = sock.set_nodelay(true);
                    tokio::spawn(serve(sock, st.clone()));
                }
            });
        });
        Server {
            addr: rx.recv().unwrap(),
            state,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues faults for the next requests, in order.
    pub fn script(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.faults.lock().unwrap().extend(faults);
    }

    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }
}

async fn serve(sock: TcpStream, st: Arc<State>) {
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut headers = Vec::new();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).await.unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                let (n, v) = (n.trim().to_ascii_lowercase(), v.trim().to_string());
                if n == "content-length" {
                    len = v.parse().unwrap_or(0);
                }
                headers.push((n, v));
            }
        }
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).await.is_err() {
            return;
        }
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        st.requests.fetch_add(1, Ordering::SeqCst);
        if st.keep_seen.load(Ordering::Relaxed) {
            st.seen.lock().unwrap().push(Seen {
                path: path.clone(),
                headers,
                body: body.clone(),
            });
        }
        let fault = st.faults.lock().unwrap().pop_front();
        let (code, extra, text) = match fault {
            Some(Fault::Status {
                code,
                headers,
                body,
            }) => (code, headers, body),
            Some(Fault::Malformed) => (200, vec![], "{\"choices\": [oops".to_string()),
            Some(Fault::Truncated) => {
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 4000\r\n\r\n{\"choices\": [{\"message\"";
                let _ = w.write_all(head.as_bytes()).await;
                let _ = w.shutdown().await;
                return;
            }
            Some(Fault::Hang(d)) => {
                tokio::time::sleep(d).await;
                (200, vec![], answer(&st, &path, &body))
            }
            None => (200, vec![], answer(&st, &path, &body)),
        };
        let mut resp = format!(
            "HTTP/1.1 {code} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            if code == 200 { "OK" } else { "Scripted" },
            text.len()
        );
        for (n, v) in extra {
            resp.push_str(&format!("{n}: {v}\r\n"));
        }
        resp.push_str("\r\n");
        resp.push_str(&text);
        if w.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn tokens(s: &str) -> u64 {
    (s.len() as u64).div_ceil(4)
}

fn answer(st: &State, path: &str, body: &Value) -> String {
    let prompt_tokens = tokens(&body.to_string());
    if path.ends_with("/v1/messages") {
        let text = (st.answer)(body, 0);
        return json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": prompt_tokens, "output_tokens": tokens(&text)},
        })
        .to_string();
    }
    let n = if st.ignore_n.load(Ordering::SeqCst) {
        1
    } else {
        body["n"].as_u64().unwrap_or(1) as usize
    };
    let texts: Vec<String> = (0..n).map(|i| (st.answer)(body, i)).collect();
    let out: u64 = texts.iter().map(|t| tokens(t)).sum();
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
        "choices": texts.iter().enumerate().map(|(i, t)| json!({
            "index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop",
        })).collect::<Vec<_>>(),
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": out, "total_tokens": prompt_tokens + out},
    })
    .to_string()
}

/// The user message of a request body, in either API.
pub fn user_text(body: &Value) -> String {
    let msgs = body["messages"].as_array().cloned().unwrap_or_default();
    msgs.iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string()
}

/// The system message of a request body, in either API.
pub fn system_text(body: &Value) -> String {
    if let Some(s) = body["system"].as_str() {
        return s.to_string();
    }
    body["messages"][0]["content"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// The input a label request is about: the text after the grounding's `Input:` line.
pub fn input_of(user: &str) -> &str {
    match user.rfind("\nInput:\n") {
        Some(i) => &user[i + "\nInput:\n".len()..],
        None => user,
    }
}
