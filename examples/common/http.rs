//! "The web", offline: a real HTTP/1.1 server (hyper) on `127.0.0.1:0` inside the example,
//! answering concurrently after a configurable delay, with generated pages; and the clients
//! the examples use against it (reqwest, async and blocking; ureq, plain blocking I/O).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What a handler answers.
pub struct Reply {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: String,
}

impl Reply {
    pub fn html(body: String) -> Reply {
        Reply {
            status: StatusCode::OK,
            content_type: "text/html; charset=utf-8",
            body,
        }
    }

    pub fn json(body: String) -> Reply {
        Reply {
            status: StatusCode::OK,
            content_type: "application/json",
            body,
        }
    }

    pub fn not_found() -> Reply {
        Reply {
            status: StatusCode::NOT_FOUND,
            content_type: "text/plain",
            body: "not found".into(),
        }
    }
}

pub type BoxReply = Pin<Box<dyn Future<Output = Reply> + Send>>;
/// A request handler: the request's path in, a reply out.
pub type Handler = Arc<dyn Fn(String) -> BoxReply + Send + Sync>;

/// Accept forever, each connection on a task of its own: requests are answered concurrently.
/// Runs on whatever tokio runtime polls it.
pub async fn serve_concurrently(listener: TcpListener, handler: Handler) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(
                    TokioIo::new(stream),
                    service_fn(move |request| respond(handler.clone(), request)),
                )
                .await;
        });
    }
}

/// Accept forever, but serve one connection at a time and close it after one response: a
/// server that waits on each request before looking at the next, however async its handler.
pub async fn serve_serially(listener: TcpListener, handler: Handler) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        let handler = handler.clone();
        let _ = http1::Builder::new()
            .keep_alive(false)
            .serve_connection(
                TokioIo::new(stream),
                service_fn(move |request| respond(handler.clone(), request)),
            )
            .await;
    }
}

async fn respond(
    handler: Handler,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = handler(request.uri().path().to_owned()).await;
    let response = Response::builder()
        .status(reply.status)
        .header("content-type", reply.content_type)
        .body(Full::new(Bytes::from(reply.body)))
        .expect("static headers are valid");
    Ok(response)
}

/// A listener on a free loopback port, ready to hand to a tokio runtime.
pub fn bind_loopback() -> (std::net::TcpListener, SocketAddr) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener
        .set_nonblocking(true)
        .expect("a non-blocking listener");
    let addr = listener.local_addr().expect("a bound address");
    (listener, addr)
}

/// How many requests the site is answering right now, the most it answered at once, and how
/// many it answered in all.
#[derive(Default)]
pub struct Traffic {
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    served: AtomicUsize,
}

impl Traffic {
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    /// Start counting afresh (between the phases of an example).
    pub fn reset(&self) {
        self.max_in_flight.store(0, Ordering::SeqCst);
        self.served.store(0, Ordering::SeqCst);
    }

    fn enter(self: &Arc<Traffic>) -> InFlight {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(self.clone())
    }
}

struct InFlight(Arc<Traffic>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.served.fetch_add(1, Ordering::SeqCst);
    }
}

/// The stand-in for the web sites the course downloads from, on a thread of its own
/// (`http-server`, its own single-threaded tokio runtime), so that it never competes with the
/// executors an example is demonstrating.
pub struct Site {
    addr: SocketAddr,
    traffic: Arc<Traffic>,
}

impl Site {
    /// Serve the generated episode pages ([`page`]), each after `delay`.
    pub fn start(delay: Duration) -> Site {
        Site::serve(delay, page)
    }

    /// Serve what `pages` gives for each path (404 for `None`), each after `delay`.
    pub fn serve(delay: Duration, pages: fn(&str) -> Option<String>) -> Site {
        let (listener, addr) = bind_loopback();
        let traffic = Arc::new(Traffic::default());
        let counted = traffic.clone();
        let handler: Handler = Arc::new(move |path: String| {
            let in_flight = counted.enter();
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                drop(in_flight);
                pages(&path).map_or_else(Reply::not_found, Reply::html)
            })
        });
        std::thread::Builder::new()
            .name("http-server".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime for the site");
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("a tokio listener");
                    serve_concurrently(listener, handler).await;
                });
            })
            .expect("a thread for the site");
        Site { addr, traffic }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }
}

/// Every page is exactly this long, so downloads can be checked by size.
pub const PAGE_BYTES: usize = 20_000;

const TOPICS: [&str; 7] = [
    "Async techniques",
    "Threads without fear",
    "Process pools in practice",
    "Locks and how to order them",
    "Structured concurrency",
    "Async web frameworks",
    "Compiled speed",
];

/// The `<h1>` of `/episode/{n}`; every seventh episode has none.
pub fn episode_title(n: u32) -> Option<String> {
    (n % 7 != 0).then(|| format!("Episode {n}: {}", TOPICS[n as usize % TOPICS.len()]))
}

/// The generated page at `path`, if there is one.
pub fn page(path: &str) -> Option<String> {
    let n: u32 = path.strip_prefix("/episode/")?.parse().ok()?;
    let heading = episode_title(n).map_or_else(String::new, |t| format!("<h1>{t}</h1>\n"));
    let mut html = format!(
        "<!doctype html>\n<html><head><title>Show #{n}</title></head>\n<body>\n{heading}<p>"
    );
    let tail = "</p>\n</body></html>\n";
    let filler = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ";
    while html.len() + tail.len() < PAGE_BYTES {
        let room = PAGE_BYTES - html.len() - tail.len();
        html.push_str(&filler[..room.min(filler.len())]);
    }
    html.push_str(tail);
    Some(html)
}

/// The text of the first `<h1>`, found with a substring search (no HTML parser needed).
pub fn first_h1(html: &str) -> Option<&str> {
    let start = html.find("<h1>")? + "<h1>".len();
    let len = html[start..].find("</h1>")?;
    Some(html[start..start + len].trim())
}

/// The async client (reqwest), for `#[unsync] async fn`. Never goes through a proxy: the
/// site is on this machine.
pub fn async_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a reqwest client")
}

/// The blocking client (reqwest's blocking API), for plain code and `#[unsync] fn`. Build and
/// drop it outside any async runtime.
pub fn blocking_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .expect("a reqwest blocking client")
}

/// A plain blocking client (ureq): blocking I/O on the calling thread and nothing else, like
/// Python's `requests`, so it can be called (and block) anywhere, even on the thread of an
/// async executor. reqwest's blocking client runs its own runtime and, in debug builds, panics
/// when called from inside another one. Never goes through a proxy.
pub fn plain_blocking_agent() -> ureq::Agent {
    ureq::Agent::config_builder().proxy(None).build().into()
}
