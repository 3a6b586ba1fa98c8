//! shield binary: the shield tier as the process. Glue only; the tier lives in the library.

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    cdn_proxy::main(cdn_proxy::Tier::Shield, shield::build)
}
