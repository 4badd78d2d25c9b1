//! The client of the core's control socket: one connection, typed requests and replies
//! (`qilin_market::control`). The only module of qilinctl that talks to the socket.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use qilin_market::control::{Reply, Request};
use serde_json::{Value, json};

/// One connection, one request per line, one JSON reply per line. Each reply is printed; each
/// request becomes an action `{socket, request, reply}` or `{socket, request, error}`. After a
/// transport error the remaining requests are not sent (the connection's state is unknown).
pub fn send_requests(socket: &Path, requests: &[Request<'_>], timeout: Duration) -> (u8, Vec<Value>) {
    let action = |request: &Request<'_>, key: &str, value: Value| json!({"socket": socket.display().to_string(), "request": request.line(), key: value});
    let connected = UnixStream::connect(socket).and_then(|stream| {
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let lines = BufReader::new(stream.try_clone()?);
        Ok((stream, lines))
    });
    let (mut stream, mut lines) = match connected {
        Ok(pair) => pair,
        Err(e) => {
            let error = format!("connecting to {}: {e}", socket.display());
            eprintln!("qilinctl: {error}");
            return (2, requests.iter().map(|r| action(r, "error", json!(error))).collect());
        }
    };
    let (mut code, mut actions) = (0u8, Vec::new());
    for (i, request) in requests.iter().enumerate() {
        match ask(&mut stream, &mut lines, request) {
            Ok((line, reply)) => {
                println!("{line}");
                if let Some(reason) = reply.error() {
                    eprintln!("qilinctl: the core refused {:?}: {reason}", request.line());
                    code = code.max(1);
                }
                actions.push(action(request, "reply", reply.to_value()));
            }
            Err(error) => {
                eprintln!("qilinctl: {:?}: {error}", request.line());
                actions.push(action(request, "error", json!(error)));
                for rest in &requests[i + 1..] {
                    actions.push(action(rest, "error", json!("not sent: an earlier request failed")));
                }
                return (2, actions);
            }
        }
    }
    (code, actions)
}

/// Sends one request; the reply's line as received (printed as is) and the reply.
fn ask(
    stream: &mut UnixStream,
    lines: &mut BufReader<UnixStream>,
    request: &Request<'_>,
) -> Result<(String, Reply), String> {
    writeln!(stream, "{request}").map_err(|e| format!("sending: {e}"))?;
    let mut line = String::new();
    match lines.read_line(&mut line) {
        Ok(0) => Err("the core closed the connection without a reply".to_owned()),
        Ok(_) => {
            let reply = Reply::parse(&line).map_err(|e| format!("reply {:?}: {e}", line.trim_end()))?;
            Ok((line.trim_end().to_owned(), reply))
        }
        Err(e) => Err(format!("reading the reply: {e}")),
    }
}
