//! AF_VSOCK through the host kernel's vhost-vsock (`/dev/vhost-vsock`). CIDs are host-global, so
//! each VM gets its own; the control port is per instance too (passed on the kernel command line).

use std::io;

use tokio_vsock::{VsockAddr, VsockListener, VsockStream, VMADDR_CID_ANY};
use vcontainer_protocol::OPERATION_PORT;

use super::{BoxFuture, BoxStream, ControlListener, Transport};

#[derive(Debug, Clone)]
pub struct KernelVsock {
    cid: u32,
}

impl KernelVsock {
    pub fn new(cid: u32) -> Self {
        Self { cid }
    }
}

impl Transport for KernelVsock {
    fn connect(&self) -> BoxFuture<'_, io::Result<BoxStream>> {
        Box::pin(async move {
            let s = VsockStream::connect(VsockAddr::new(self.cid, OPERATION_PORT)).await?;
            Ok(Box::new(s) as BoxStream)
        })
    }

    fn describe(&self) -> String {
        format!("kernel vsock, guest CID {}", self.cid)
    }
}

pub struct KernelControlListener {
    listener: VsockListener,
}

impl KernelControlListener {
    pub fn bind(port: u32) -> io::Result<Self> {
        Ok(Self {
            listener: VsockListener::bind(VsockAddr::new(VMADDR_CID_ANY, port))?,
        })
    }
}

impl ControlListener for KernelControlListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<BoxStream>> {
        Box::pin(async move {
            let (s, _) = self.listener.accept().await?;
            Ok(Box::new(s) as BoxStream)
        })
    }
}
