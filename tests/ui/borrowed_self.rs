use unsync::unsync;

struct Cache;

impl Cache {
    #[unsync]
    fn get(&self, key: String) -> String {
        key
    }

    #[unsync]
    async fn put(&mut self, key: String) {
        drop(key);
    }

    #[unsync]
    async fn poll_more(self: std::pin::Pin<&mut Self>) -> u8 {
        1
    }
}

fn main() {}
