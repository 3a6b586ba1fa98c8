//! The admin app of a proxy tier, served by Pingora on its own listener: the answers come from
//! `cdn_observe::admin`; this brings the cache gauges up to date before `/metrics` and probes
//! the upstreams for `/readyz`.

use crate::admission::Gate;
use crate::upstream::Upstreams;
use async_trait::async_trait;
use cdn_cache::HybridStorage;
use cdn_observe::{CacheFigures, Metrics};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

pub struct ProxyAdmin {
    pub metrics: &'static Metrics,
    pub storage: &'static HybridStorage,
    pub upstreams: Arc<Upstreams>,
    pub gate: Arc<dyn Gate>,
}

impl ProxyAdmin {
    fn figures(&self) -> CacheFigures {
        let usage = self.storage.usage();
        let disk = usage.disk.unwrap_or_default();
        CacheFigures {
            memory_objects: usage.memory_objects,
            memory_bytes: usage.memory_bytes,
            memory_evictions: usage.memory_evictions,
            disk_objects: disk.objects as u64,
            disk_bytes: disk.bytes,
            disk_evictions: disk.evicted_objects,
            corrupt: disk.corrupt,
            disk_faults: usage.disk_faults,
        }
    }
}

#[async_trait]
impl ServeHttp for ProxyAdmin {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_owned();
        if path == "/metrics" {
            self.metrics.cache(&self.figures());
        }
        // The storage exists only once its index is rebuilt, so reaching here means loaded.
        let ready = || cdn_observe::admin::any_reachable(self.upstreams.peers());
        let mut a = cdn_observe::admin::answer(&path, self.metrics, ready).await;
        if path == "/readyz" && a.status == 200 {
            // Still serving, so still ready; but say what is not working.
            let mut why = Vec::new();
            if self.storage.degraded() {
                why.push("disk cache writes failing, misses pass through uncached".to_owned());
            }
            why.extend(self.gate.degraded());
            if !why.is_empty() {
                a = cdn_observe::admin::Answer::text(
                    200,
                    format!("degraded: {}\n", why.join("; ")),
                );
            }
        }
        http::Response::builder()
            .status(a.status)
            .header(http::header::CONTENT_TYPE, a.content_type)
            .header(http::header::CONTENT_LENGTH, a.body.len())
            .header(http::header::CACHE_CONTROL, "no-store")
            .body(a.body)
            .expect("valid admin response")
    }
}
