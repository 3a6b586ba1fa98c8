//! Starts one caching proxy tier as a Pingora server: the settings Pingora needs (threads,
//! grace period) come from our config; Pingora's own YAML and command line are not used.
//! SIGTERM stops gracefully (requests in flight finish within the grace period), SIGINT at once.

use crate::admin::ProxyAdmin;
use crate::cache;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::proxy::admission::Tier;
use crate::proxy::TierProxy;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;

/// Runs `tier` until a stop signal; never returns.
pub fn run(tier: Tier, config: &Config) -> ! {
    let settings = match tier {
        Tier::Edge => &config.edge,
        Tier::Shield => &config.shield,
    };
    let grace = settings.grace_period.as_secs();
    let conf = ServerConf {
        threads: settings.threads,
        grace_period_seconds: Some(grace),
        graceful_shutdown_timeout_seconds: Some(grace.max(1)),
        // One socket per process, so several tiers (and tests) can run side by side.
        upgrade_sock: std::env::temp_dir()
            .join(format!(
                "{}-{}.upgrade.sock",
                tier.name(),
                std::process::id()
            ))
            .display()
            .to_string(),
        pid_file: std::env::temp_dir()
            .join(format!("{}-{}.pid", tier.name(), std::process::id()))
            .display()
            .to_string(),
        ..ServerConf::default()
    };
    let storage = match cache::storage(&settings.cache) {
        Ok(storage) => storage,
        Err(e) => {
            eprintln!("{}: cannot open the cache: {e}", tier.name());
            std::process::exit(1);
        }
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let metrics: &'static Metrics = Box::leak(Box::new(Metrics::new(tier.metric_label())));
    let proxy = TierProxy::new(tier, settings, config.routes.clone(), storage, metrics);
    let mut service =
        pingora::proxy::http_proxy_service_with_name(&server.configuration, proxy, tier.name());
    service.add_tcp(&settings.listen.to_string());
    server.add_service(service);
    if let Some(admin) = settings.admin {
        let app = ProxyAdmin {
            metrics,
            storage,
            upstreams: settings.upstreams.clone(),
        };
        let mut service =
            pingora::services::listening::Service::new(format!("{} admin", tier.name()), app);
        service.add_tcp(&admin.to_string());
        server.add_service(service);
    }
    tracing::info!(
        tier = tier.name(),
        listen = %settings.listen,
        upstreams = ?settings.upstreams,
        memory = settings.cache.memory_bytes,
        admin = ?settings.admin,"ready"
    );
    server.run_forever()
}
