//! The `CLAIM <what> ... PASS|FAIL|SKIP (<measured figure>)` lines each example ends with.
//!
//! Three kinds of claim:
//! - correctness (values, counts, invariants, where things ran): a FAIL makes the example exit
//!   with status 1, so CI catches it;
//! - timing: printed, never changes the exit code (shared CI machines are noisy);
//! - CPU speedup: like timing, and SKIP on a machine with fewer than 2 cores.

use std::fmt::Display;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Correctness,
    Timing,
    Speedup,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Pass,
    Fail,
    Skip,
}

struct Claim {
    kind: Kind,
    what: String,
    verdict: Verdict,
    figure: String,
}

/// The claims of one run, printed and judged by [`Claims::finish`].
#[derive(Default)]
pub struct Claims {
    claims: Vec<Claim>,
}

impl Claims {
    pub fn new() -> Claims {
        Claims::default()
    }

    /// A correctness claim: a FAIL makes the example exit non-zero.
    pub fn correct(&mut self, what: impl Into<String>, pass: bool, figure: impl Display) {
        self.push(Kind::Correctness, what, pass, figure);
    }

    /// A correctness claim that only holds with at least `min_cores` cores (say, "the work
    /// spread over two processes"): as [`Claims::correct`] there, SKIP below.
    pub fn correct_on_cores(
        &mut self,
        min_cores: usize,
        what: impl Into<String>,
        pass: bool,
        figure: impl Display,
    ) {
        if cores() < min_cores {
            self.claims.push(Claim {
                kind: Kind::Correctness,
                what: what.into(),
                verdict: Verdict::Skip,
                figure: format!(
                    "{figure}; needs {min_cores} cores, this machine has {}",
                    cores()
                ),
            });
        } else {
            self.push(Kind::Correctness, what, pass, figure);
        }
    }

    /// A timing claim: reported, never changes the exit code.
    pub fn timing(&mut self, what: impl Into<String>, pass: bool, figure: impl Display) {
        self.push(Kind::Timing, what, pass, figure);
    }

    /// A CPU-speedup claim: like a timing claim, and SKIP on fewer than 2 cores.
    pub fn speedup(&mut self, what: impl Into<String>, pass: bool, figure: impl Display) {
        if cores() < 2 {
            self.claims.push(Claim {
                kind: Kind::Speedup,
                what: what.into(),
                verdict: Verdict::Skip,
                figure: format!("{figure}; needs 2 cores, this machine has {}", cores()),
            });
        } else {
            self.push(Kind::Speedup, what, pass, figure);
        }
    }

    fn push(&mut self, kind: Kind, what: impl Into<String>, pass: bool, figure: impl Display) {
        self.claims.push(Claim {
            kind,
            what: what.into(),
            verdict: if pass { Verdict::Pass } else { Verdict::Fail },
            figure: figure.to_string(),
        });
    }

    /// Print one line per claim and a summary; exit with status 1 if a correctness claim failed.
    pub fn finish(self) {
        println!();
        for claim in &self.claims {
            let verdict = match claim.verdict {
                Verdict::Pass => "PASS",
                Verdict::Fail => "FAIL",
                Verdict::Skip => "SKIP",
            };
            println!("CLAIM {} ... {verdict} ({})", claim.what, claim.figure);
        }
        let count = |kind: Kind, verdict: Verdict| {
            self.claims
                .iter()
                .filter(|c| c.kind == kind && c.verdict == verdict)
                .count()
        };
        let hard_failed = count(Kind::Correctness, Verdict::Fail);
        let skipped = match count(Kind::Correctness, Verdict::Skip) {
            0 => String::new(),
            n => format!(", {n} SKIP"),
        };
        let mut summary = format!(
            "summary: correctness {} PASS, {hard_failed} FAIL{skipped} (these alone set the exit code)",
            count(Kind::Correctness, Verdict::Pass)
        );
        for (kind, name) in [(Kind::Timing, "timing"), (Kind::Speedup, "speedup")] {
            if self.claims.iter().any(|c| c.kind == kind) {
                summary += &format!(
                    "; {name} {} PASS, {} FAIL, {} SKIP",
                    count(kind, Verdict::Pass),
                    count(kind, Verdict::Fail),
                    count(kind, Verdict::Skip)
                );
            }
        }
        println!("{summary}");
        if hard_failed > 0 {
            std::process::exit(1);
        }
    }
}

/// The cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
