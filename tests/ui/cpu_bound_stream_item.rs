use unsync::unsync;

/// Not `Serialize`: its values cannot cross to the parent process.
struct Record {
    line: u64,
}

#[unsync(cpu_bound)]
fn records(n: u64) -> impl Iterator<Item = Record> {
    (0..n).map(|line| Record { line })
}

fn main() {
    for record in records(3) {
        let _ = record.line;
    }
}
