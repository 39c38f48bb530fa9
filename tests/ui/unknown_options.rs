use unsync::unsync;

#[unsync(cpu_bond)]
fn typo() {}

#[unsync(threads = 4)]
fn a() {}

#[unsync(cpu_bound = true)]
fn b() {}

#[unsync(parallel, cpu_bound)]
fn c() {}

#[unsync(crate = my_unsync)]
fn d() {}

fn main() {}
