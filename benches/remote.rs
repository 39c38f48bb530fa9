//! `#[unsync(remote)]` against Temporal's raw SDK, on the dev server `scripts/test-remote.sh
//! --bench` starts (`UNSYNC_REMOTE`); not run by a plain `cargo bench`.
//!
//! 1. Latency: one call then its result, sequentially: a raw `start_activity` + `result` to a
//!    raw SDK worker whose activity returns its input, against an `#[unsync(remote)]` call to a
//!    serving process (which runs it in a worker process of its own). Target: ratio <= 1.2.
//! 2. Burst: 500 calls submitted at once, then all their results: raw SDK (4 slots) against
//!    `remote` (a serving process with 4 worker processes). Target: >= 0.8x the raw calls/s.
//! 3. Scale-out: 8 calls of 200 ms of CPU each over one serving process, then over two (one
//!    worker process each). Target: two >= 1.7x one.
//!
//! `bash scripts/test-remote.sh --bench`

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use unsync::__private::temporal::client::{
    ActivityStartOptions, Client, ClientOptions, Connection, ConnectionOptions, Url,
};
use unsync::__private::temporal::common::{ActivityCloseTimeouts, ActivityDefinition};
use unsync::__private::temporal::sdk::activities::{
    ActivityContext, ActivityDefinitions, ActivityError, ActivityImplementer, ExecutableActivity,
};
use unsync::__private::temporal::sdk::runtime::worker_tuner::{FixedSizeSlotSupplier, TunerHolder};
use unsync::__private::temporal::sdk::{Runtime, Worker, WorkerOptions};
use unsync::unsync;

#[unsync(remote)]
fn echo(n: u64) -> u64 {
    n
}

/// About `millis` of CPU work.
#[unsync(remote)]
fn burn(millis: u64) -> u64 {
    let until = Instant::now() + Duration::from_millis(millis);
    let mut x = 1_u64;
    while Instant::now() < until {
        for _ in 0..10_000 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        }
    }
    x
}

/// The raw baseline's activity: returns its input.
struct Echo;

impl ActivityDefinition for Echo {
    type Input = Vec<u8>;
    type Output = Vec<u8>;
    fn name(&self) -> &str {
        "BenchEcho"
    }
}

struct EchoImpl;

impl ActivityImplementer for EchoImpl {
    fn register_all(self: Arc<Self>, defs: &mut ActivityDefinitions) {
        defs.register_activity::<Echo>(self);
    }
}

impl ExecutableActivity for Echo {
    type Implementer = EchoImpl;
    const REQUIRES_INSTANCE: bool = false;
    fn definition() -> Self {
        Echo
    }
    fn execute(
        _: Option<Arc<EchoImpl>>,
        _: ActivityContext,
        input: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, ActivityError>> {
        Box::pin(async move { Ok(input) })
    }
}

const RAW_QUEUE: &str = "unsync-bench-raw";

fn address() -> String {
    std::env::var("UNSYNC_REMOTE")
        .expect("run with `bash scripts/test-remote.sh --bench`, which sets UNSYNC_REMOTE")
}

async fn raw_client() -> Client {
    let authority = address()
        .trim_start_matches("temporal://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let url = Url::parse(&format!("http://{authority}")).unwrap();
    let connection = Connection::connect(ConnectionOptions::new(url).build())
        .await
        .unwrap();
    Client::new(connection, ClientOptions::new("default").build()).unwrap()
}

async fn raw_call(client: &Client, id: String) {
    let options = ActivityStartOptions::new(
        RAW_QUEUE,
        id,
        ActivityCloseTimeouts::ScheduleToClose(Duration::from_secs(60)),
    )
    .build();
    let handle = client
        .start_activity(Echo, 7_u64.to_le_bytes().to_vec(), options)
        .await
        .unwrap();
    handle.result().await.unwrap();
}

/// A serving process of this bench with `processes` worker processes, ready.
fn serve(processes: usize) -> Child {
    use std::io::BufRead;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("UNSYNC_SERVE", "remote")
        .env("UNSYNC_PROCESSES", processes.to_string())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("serving task queue") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60)).unwrap();
    child
}

fn stop(mut servers: Vec<Child>) {
    for server in &servers {
        // SAFETY: kill(2) on a child of this bench.
        unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    }
    for server in &mut servers {
        let _ = server.wait();
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The raw SDK worker, in this process (on a thread of its own: its future is not `Send`),
    // with 4 slots.
    let client = runtime.block_on(raw_client());
    std::thread::spawn(move || {
        let local = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        local.block_on(raw_worker())
    });
    run(&runtime, &client);
}

async fn raw_worker() {
    {
        let worker_client = raw_client().await;
        let sdk = Runtime::from_current_tokio(Default::default()).unwrap();
        let options = WorkerOptions::new(RAW_QUEUE)
            .register_activities(EchoImpl)
            .tuner(
                TunerHolder::builder()
                    .workflow_task_slot_supplier(FixedSizeSlotSupplier::new(1))
                    .activity_task_slot_supplier(FixedSizeSlotSupplier::new(4))
                    .local_activity_task_slot_supplier(FixedSizeSlotSupplier::new(1))
                    .nexus_task_slot_supplier(FixedSizeSlotSupplier::new(1))
                    .build(),
            )
            .build();
        let mut worker = Worker::new(&sdk, worker_client, options).unwrap();
        worker.run().await.unwrap();
    }
}

fn run(runtime: &tokio::runtime::Runtime, client: &Client) {
    println!("1. latency: one call, then its result, sequentially (median of 40)");
    let servers = vec![serve(4)];
    let mut n = 0_u64;
    let mut next_id = || {
        n += 1;
        format!("bench-raw-{}-{n}", std::process::id())
    };
    for _ in 0..5 {
        runtime.block_on(raw_call(client, next_id()));
        echo(1).result();
    }
    let mut raw = Vec::new();
    let mut ours = Vec::new();
    for i in 0..40 {
        let t = Instant::now();
        runtime.block_on(raw_call(client, next_id()));
        raw.push(t.elapsed());
        let t = Instant::now();
        assert_eq!(echo(i).result(), i);
        ours.push(t.elapsed());
    }
    let (raw, ours) = (median(raw), median(ours));
    let ratio = ours.as_secs_f64() / raw.as_secs_f64();
    println!("   raw SDK            {:>8.2} ms", raw.as_secs_f64() * 1e3);
    println!("   #[unsync(remote)]  {:>8.2} ms", ours.as_secs_f64() * 1e3);
    println!(
        "   ratio {ratio:.2} (target <= 1.2): {}",
        if ratio <= 1.2 { "met" } else { "NOT met" }
    );

    const BURST: u64 = 500;
    println!("2. burst: {BURST} calls submitted at once, then every result (4 slots each)");
    let t = Instant::now();
    runtime.block_on(async {
        let calls: Vec<_> = (0..BURST)
            .map(|_| {
                let client = client.clone();
                let id = next_id();
                tokio::spawn(async move { raw_call(&client, id).await })
            })
            .collect();
        for call in calls {
            call.await.unwrap();
        }
    });
    let raw_rate = BURST as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let calls: Vec<_> = (0..BURST).map(echo).collect();
    let sum: u64 = calls.into_iter().map(unsync::Unfinished::result).sum();
    assert_eq!(sum, (0..BURST).sum::<u64>());
    let our_rate = BURST as f64 / t.elapsed().as_secs_f64();
    let ratio = our_rate / raw_rate;
    println!("   raw SDK            {raw_rate:>8.1} calls/s");
    println!("   #[unsync(remote)]  {our_rate:>8.1} calls/s");
    println!(
        "   ratio {ratio:.2} (target >= 0.8): {}",
        if ratio >= 0.8 { "met" } else { "NOT met" }
    );
    stop(servers);

    const CPU_CALLS: u64 = 8;
    println!("3. scale-out: {CPU_CALLS} calls of 200 ms CPU, one worker process per server");
    let mut times = Vec::new();
    for servers in [1, 2] {
        let running: Vec<Child> = (0..servers).map(|_| serve(1)).collect();
        burn(1).result();
        let t = Instant::now();
        let calls: Vec<_> = (0..CPU_CALLS).map(|_| burn(200)).collect();
        for call in calls {
            call.result();
        }
        let took = t.elapsed();
        println!("   {servers} server(s)  {:>8.2} s", took.as_secs_f64());
        times.push(took);
        stop(running);
    }
    let speedup = times[0].as_secs_f64() / times[1].as_secs_f64();
    println!(
        "   speed-up {speedup:.2}x (target >= 1.7, on a machine with 2 free cores): {}",
        if speedup >= 1.7 { "met" } else { "NOT met" }
    );
}
