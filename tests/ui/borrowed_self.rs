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
}

fn main() {}
