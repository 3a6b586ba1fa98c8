//! A real S3-compatible server (s3s-fs: SigV4-checked, objects as plain files under
//! `root/<bucket>/<key>`) on `127.0.0.1:0`, counting the requests it answers.

use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub const ACCESS_KEY: &str = "testkit-access";
pub const SECRET_KEY: &str = "testkit-secret-key-0123456789";

pub struct S3Server {
    pub addr: SocketAddr,
    pub bucket: String,
    root: tempfile::TempDir,
    requests: Arc<AtomicUsize>,
    _runtime: tokio::runtime::Runtime,
}

impl S3Server {
    /// Starts a server with one empty bucket.
    pub fn start(bucket: &str) -> S3Server {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join(bucket)).expect("bucket dir");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let requests = Arc::new(AtomicUsize::new(0));
        let fs = s3s_fs::FileSystem::new(root.path()).expect("s3s-fs root");
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind s3 server");
        let addr = listener.local_addr().expect("addr");
        let counter = requests.clone();
        runtime.spawn(async move {
            let http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let service = service.clone();
                let counter = counter.clone();
                let counted = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        Service::call(&service, req)
                    },
                );
                let conn = http
                    .serve_connection(TokioIo::new(socket), counted)
                    .into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
        S3Server {
            addr,
            bucket: bucket.to_owned(),
            root,
            requests,
            _runtime: runtime,
        }
    }

    /// Lays an object down as the file s3s-fs serves it from.
    pub fn put(&self, key: &str, data: &[u8]) {
        let path = self.object_path(key);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, data).expect("write object");
    }

    pub fn object_path(&self, key: &str) -> PathBuf {
        self.root.path().join(&self.bucket).join(key)
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Requests answered so far (any method).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// The keys this server accepts, as origin-adapter takes them in-process.
    pub fn credentials() -> origin_adapter::Credentials {
        origin_adapter::Credentials::Given {
            access_key_id: ACCESS_KEY.into(),
            secret_access_key: SECRET_KEY.into(),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}
