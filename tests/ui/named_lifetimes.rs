use std::borrow::Cow;
use unsync::unsync;

#[unsync]
fn first<'a>(items: Vec<&'a str>) -> usize {
    items.len()
}

#[unsync]
fn label(name: Cow<'_, str>) -> String {
    name.into_owned()
}

#[unsync]
fn leak(name: String) -> &str {
    Box::leak(name.into_boxed_str())
}

fn main() {}
