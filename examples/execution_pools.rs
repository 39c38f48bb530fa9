//! Execution pools: the same function on the thread pool and on the process pool, switched by
//! the attribute alone. The course's chapter 8 lesson (`08-execution-pools/program.py`), where
//! `ThreadPoolExecutor` and `ProcessPoolExecutor` are imported under one alias, offline.
//!
//! Five "sites" are paths on a local HTTP server that waits 100 ms before each answer. One page
//! has no `<h1>` (the title is `NONE`, as Google's was in the course); one has an `<h1>` with no
//! text around a link with a `title` attribute (the fallback). `get_title` downloads a page with
//! a blocking client and returns the text of its first `<h1>`. It is written twice, with one
//! body and one difference, the attribute:
//!
//! - `on_threads::get_title`, `#[unsync] fn`: the thread pool; every call prints this process's
//!   pid, as the course's thread pool printed `MainProcess` on every row;
//! - `on_processes::get_title`, `#[unsync(cpu_bound)] fn`: the process pool; every call prints
//!   a worker's pid and name (the course's `ForkProcess-1`, `-2`, ...). The workers reach the
//!   parent's server over loopback.
//!
//! Both runs submit the five calls, print `Waiting for downloads...`, wait for all of them
//! (`unsync::join_all`, the `with Executor() as ex:` block), print `Done`, then the titles in
//! submission order.
//!
//! Proves: the thread-pool calls ran in this process, the process-pool calls in other
//! processes (two or more on two or more cores); both give the same titles in submission
//! order, `NONE` and the fallback included.
//!
//! `cargo run --release --example execution_pools`

mod common;

use std::collections::BTreeSet;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use common::claims::Claims;
use common::http::{self, Site};
use common::place::{Place, here, process_name};
use serde::{Deserialize, Serialize};
use unsync::Unfinished;

const DELAY: Duration = Duration::from_millis(100);

/// The five sites of the course, as paths on the local server, with the title each should get.
const SITES: [(&str, &str); 5] = [
    ("talkpython.fm", "Talk Python To Me"),
    ("pythonbytes.fm", "Python Bytes"),
    ("google.com", "NONE"),
    ("realpython.com", "Real Python"),
    ("training.talkpython.fm", "Talk Python Training"),
];

/// The page of each site: a plain `<h1>`, one whose text is in a link, none at all, an empty
/// one around a link that has only a `title`, and one padded with whitespace.
fn site_page(path: &str) -> Option<String> {
    let heading = match path.strip_prefix('/')? {
        "talkpython.fm" => "<h1>Talk Python To Me</h1>",
        "pythonbytes.fm" => "<h1 class=\"brand\"><a href=\"/\">Python Bytes</a></h1>",
        "google.com" => "<div id=\"logo\"><img alt=\"Search\" src=\"/logo.png\"></div>",
        "realpython.com" => {
            "<h1 class=\"logo\"><a href=\"/\" title=\"Real Python\"><img src=\"/logo.svg\" alt=\"\"></a></h1>"
        }
        "training.talkpython.fm" => "<h1>\n   Talk Python Training\n  </h1>",
        _ => return None,
    };
    Some(format!(
        "<!doctype html>\n<html><head><title>{path}</title></head>\n<body>\n{heading}\n<p>Welcome.</p>\n</body></html>\n"
    ))
}

/// What one call returns: the site, its title, and where the call ran.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Fetched {
    site: String,
    title: String,
    place: Place,
    process: String,
}

/// A blocking client per process: the parent builds one for the thread pool, each worker
/// process builds its own on its first call.
static CLIENT: LazyLock<reqwest::blocking::Client> = LazyLock::new(http::blocking_client);

/// The body both attributes share: print where it runs, download, find the title.
fn fetch_title(url: &str) -> Fetched {
    let site = url.rsplit('/').next().unwrap_or(url).to_owned();
    let place = here();
    let process = process_name();
    println!(
        "Getting title from {site}, PID: {}, process: {process}, thread: {}",
        place.pid, place.thread
    );
    let html = CLIENT
        .get(url)
        .header("user-agent", "Mozilla/5.0 (unsync execution_pools example)")
        .send()
        .and_then(reqwest::blocking::Response::error_for_status)
        .and_then(reqwest::blocking::Response::text)
        .expect("the local site answers with the page");
    Fetched {
        site,
        title: title_of(&html),
        place,
        process,
    }
}

mod on_threads {
    use super::{Fetched, fetch_title};
    use unsync::unsync;

    /// On the thread pool.
    #[unsync]
    pub fn get_title(url: String) -> Fetched {
        fetch_title(&url)
    }
}

mod on_processes {
    use super::{Fetched, fetch_title};
    use unsync::unsync;

    /// On the process pool: the only difference is the attribute.
    #[unsync(cpu_bound)]
    pub fn get_title(url: String) -> Fetched {
        fetch_title(&url)
    }
}

/// The course's rules, with string searches standing in for BeautifulSoup: the text of the
/// first `<h1>` (tags removed, whitespace trimmed); if it has none, the text of its first `<a>`,
/// or that link's `title` attribute; `NONE` if there is no `<h1>` or nothing in it.
fn title_of(html: &str) -> String {
    let Some((_, h1)) = element(html, "h1") else {
        return "NONE".into();
    };
    let text = text_of(h1);
    if !text.is_empty() {
        return text;
    }
    if let Some((attributes, a)) = element(h1, "a") {
        let text = text_of(a);
        if !text.is_empty() {
            return text;
        }
        if let Some(title) = attribute(attributes, "title") {
            return title.to_owned();
        }
    }
    "NONE".into()
}

/// The first `<tag ...>...</tag>` in `html`: its attributes and its inner HTML.
fn element<'a>(html: &'a str, tag: &str) -> Option<(&'a str, &'a str)> {
    let open = format!("<{tag}");
    let mut from = 0;
    let start = loop {
        let at = from + html[from..].find(&open)?;
        let after = &html[at + open.len()..];
        if after.starts_with(['>', ' ', '\t', '\n', '\r', '/']) {
            break at + open.len();
        }
        from = at + open.len();
    };
    let close_of_open = start + html[start..].find('>')?;
    let attributes = &html[start..close_of_open];
    let inner_start = close_of_open + 1;
    let inner_len = html[inner_start..].find(&format!("</{tag}>"))?;
    Some((attributes, &html[inner_start..inner_start + inner_len]))
}

/// The text of an HTML fragment: tags dropped, whitespace collapsed and trimmed.
fn text_of(fragment: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in fragment.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The value of `name="..."` among a tag's attributes.
fn attribute<'a>(attributes: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=\"");
    let mut from = 0;
    loop {
        let at = from + attributes[from..].find(&key)?;
        let boundary = at == 0 || attributes[..at].ends_with(char::is_whitespace);
        let value_start = at + key.len();
        if boundary {
            let len = attributes[value_start..].find('"')?;
            return Some(&attributes[value_start..value_start + len]);
        }
        from = value_start;
    }
}

struct Run {
    name: &'static str,
    fetched: Vec<Fetched>,
    elapsed: Duration,
}

fn run(name: &'static str, urls: &[String], submit: fn(String) -> Unfinished<Fetched>) -> Run {
    println!("\n== {name}");
    let start = Instant::now();
    let handles: Vec<Unfinished<Fetched>> = urls.iter().cloned().map(submit).collect();
    println!("Waiting for downloads...");
    let fetched = unsync::join_all(handles).result();
    let elapsed = start.elapsed();
    println!("Done in {}.", common::secs(elapsed));
    for f in &fetched {
        println!("{:<24} {}", f.site, f.title);
    }
    Run {
        name,
        fetched,
        elapsed,
    }
}

fn main() {
    let site = Site::serve(DELAY, site_page);
    let main_place = here();
    println!(
        "Local server at {} answers each site after {DELAY:?}; main is {main_place}, process {}",
        site.url("/"),
        process_name()
    );
    let urls: Vec<String> = SITES
        .iter()
        .map(|(name, _)| site.url(&format!("/{name}")))
        .collect();

    let threads = run(
        "thread pool: #[unsync] fn get_title",
        &urls,
        on_threads::get_title,
    );
    let processes = run(
        "process pool: #[unsync(cpu_bound)] fn get_title (its first call starts the workers)",
        &urls,
        on_processes::get_title,
    );

    println!();
    for r in [&threads, &processes] {
        let pids: BTreeSet<u32> = r.fetched.iter().map(|f| f.place.pid).collect();
        println!(
            "{:<84} {:>7}, pids {pids:?}",
            r.name,
            common::secs(r.elapsed)
        );
    }

    let mut claims = Claims::new();
    let main_pid = main_place.pid;
    let in_main = threads
        .fetched
        .iter()
        .filter(|f| f.place.pid == main_pid && f.place.on_blocking_pool())
        .count();
    claims.correct(
        "thread pool: every call ran in this process (pid == main pid), on a pool thread",
        in_main == SITES.len(),
        format!("{in_main}/{} in pid {main_pid}", SITES.len()),
    );
    let elsewhere = processes
        .fetched
        .iter()
        .filter(|f| f.place.in_worker_process())
        .count();
    claims.correct(
        "process pool: every call ran in another process (pid != main pid), a worker",
        elsewhere == SITES.len(),
        format!("{elsewhere}/{} outside pid {main_pid}", SITES.len()),
    );
    let worker_pids: BTreeSet<u32> = processes.fetched.iter().map(|f| f.place.pid).collect();
    claims.correct_on_cores(
        2,
        "process pool: the calls were spread over >= 2 worker processes",
        worker_pids.len() >= 2,
        format!("{} distinct pids", worker_pids.len()),
    );
    let expected: Vec<(&str, &str)> = SITES.to_vec();
    let titles = |r: &Run| -> Vec<(String, String)> {
        r.fetched
            .iter()
            .map(|f| (f.site.clone(), f.title.clone()))
            .collect()
    };
    let right = |r: &Run| {
        titles(r)
            .iter()
            .zip(&expected)
            .filter(|((site, title), (want_site, want_title))| {
                site == want_site && title == want_title
            })
            .count()
    };
    claims.correct(
        "titles identical in both modes, in submission order",
        titles(&threads) == titles(&processes) && right(&threads) == SITES.len(),
        format!(
            "threads {}/{} right, processes {}/{} right",
            right(&threads),
            SITES.len(),
            right(&processes),
            SITES.len()
        ),
    );
    fn special(r: &Run) -> (&str, &str) {
        (&r.fetched[2].title, &r.fetched[3].title)
    }
    claims.correct(
        "no <h1> gives NONE; an empty <h1> falls back to its link's title",
        [special(&threads), special(&processes)]
            .iter()
            .all(|&s| s == ("NONE", "Real Python")),
        format!(
            "google.com: {:?}, realpython.com: {:?}",
            special(&processes).0,
            special(&processes).1
        ),
    );
    claims.finish();
}
