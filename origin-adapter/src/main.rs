//! origin-adapter binary: reads the shared config and serves the origin. Glue only.

fn main() -> anyhow::Result<()> {
    // Both ring and aws-lc-rs may be compiled in; pick one before any TLS client is built.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = cdn_tier::cli::load_config("origin-adapter");
    cdn_tier::cli::init_logging(config.log_format);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(origin_adapter::run(config))
}
