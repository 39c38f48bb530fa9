use unsync::unsync;

#[unsync]
fn count_words(text: &str) -> usize {
    text.split_whitespace().count()
}

#[unsync]
fn total(values: &[u64]) -> u64 {
    values.iter().sum()
}

#[unsync]
async fn append(buffer: &mut Vec<u8>) {
    buffer.push(1);
}

#[unsync]
fn read(config: &std::path::Path) -> bool {
    config.exists()
}

#[unsync]
fn first_word(text: &str) -> &str {
    text.split(' ').next().unwrap_or("")
}

fn main() {}
