//! origin-adapter binary: reads the shared config and serves the origin until SIGTERM or SIGINT.
//! Glue only.

fn main() -> anyhow::Result<()> {
    // Both ring and aws-lc-rs may be compiled in; pick one before any TLS client is built.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = cdn_config::cli::load_config("origin-adapter");
    cdn_observe::logging::init(config.log_format);
    let credentials = origin_adapter::Credentials::Environment;
    let adapter = origin_adapter::OriginAdapter::bind(&config, &credentials)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            cdn_config::cli::announce("origin-adapter", &adapter.listen());
            adapter.serve(origin_adapter::server::stop_signal()).await
        })?;
    Ok(())
}
