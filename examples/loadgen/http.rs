//! HTTP: one keep-alive HTTP/1.1 connection per worker.

use crate::*;

#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    /// `host:port`, for the Host header.
    pub(crate) authority: String,
}

impl Target {
    pub(crate) async fn parse(url: &str) -> Result<Target, BoxError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or("--url must start with http://")?;
        let authority = rest.split('/').next().unwrap_or_default().to_owned();
        let addr = tokio::net::lookup_host(&authority)
            .await?
            .next()
            .ok_or_else(|| format!("cannot resolve {authority}"))?;
        Ok(Target { addr, authority })
    }
}

pub(crate) struct Conn {
    pub(crate) target: Target,
    pub(crate) sender: Option<SendRequest<Full<Bytes>>>,
}

pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Bytes,
}

impl Conn {
    pub(crate) fn new(target: Target) -> Conn {
        Conn {
            target,
            sender: None,
        }
    }

    /// Opens the connection now, so that connecting is not part of the first measured request.
    pub(crate) async fn connect(&mut self) -> Result<(), BoxError> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = TcpStream::connect(self.target.addr).await?;
            stream.set_nodelay(true)?;
            let (sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        Ok(())
    }

    pub(crate) fn request(&self, method: &str, path: &str) -> hyper::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.target.authority)
    }

    /// Sends one request and reads the whole answer. A transport error drops the connection
    /// (the next request opens a new one).
    pub(crate) async fn send(&mut self, request: Request<Full<Bytes>>) -> Result<Answer, BoxError> {
        self.connect().await?;
        let sender = self.sender.as_mut().expect("connected");
        let result = async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, BoxError>(Answer { status, body })
        }
        .await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }
}

pub(crate) async fn wait_ready(target: &Target, seconds: f64) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut conn = Conn::new(target.clone());
    loop {
        let request = conn
            .request("GET", "/healthz")
            .body(Full::new(Bytes::new()))?;
        match conn.send(request).await {
            Ok(answer) if answer.status == 200 => return Ok(()),
            _ if Instant::now() >= deadline => {
                return Err(format!("{} did not become healthy", target.authority).into());
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
