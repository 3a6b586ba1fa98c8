//! shield binary: reads the shared config and runs the shield tier. Glue only; the tier lives in
//! `cdn_tier`.

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let config = cdn_tier::cli::load_config("shield");
    cdn_tier::cli::init_logging(config.log_format);
    cdn_tier::server::run(cdn_tier::Tier::Shield, &config)
}
