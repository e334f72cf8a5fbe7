//! Importing an OCI layout into the guest's engine: the manifest for the guest's platform (chosen
//! by `vcontainer_oci::platform`) is streamed as a single-image layout tar to the agent, which
//! hands it to skopeo. No copy of the layout is made on the host.

use std::io;
use std::path::Path;

use oci_spec::image::{Platform, PlatformBuilder};
use tokio::io::AsyncWrite;
use vcontainer_initramfs::Arch;
use vcontainer_oci::platform::{select_platform, write_selection_tar, PlatformSelection};
use vcontainer_protocol::{ExitStatus, Request};

use super::stream::{stream_from_producer, StreamProgress};
use super::OpError;
use crate::session::{AgentConn, ConnWriter};
use crate::transport::Transport;

/// The OCI platform of a guest of `arch`: the one place our arch names meet OCI's. The guest CPUs
/// are ARMv8, so an arm64 image must have no variant or `v8`.
pub fn target_platform(arch: Arch) -> Platform {
    let b = PlatformBuilder::default()
        .architecture(arch.oci())
        .os("linux");
    let b = match arch {
        Arch::Aarch64 => b.variant("v8"),
        Arch::X86_64 => b,
    };
    b.build().expect("architecture and os are set")
}

/// Streams the selection (see [`write_selection_tar`]) as `Data` frames and an `End` frame.
pub async fn send_selection_as_tar(
    writer: &mut ConnWriter,
    sel: &PlatformSelection,
    progress: StreamProgress<'_>,
) -> Result<u64, OpError> {
    let sel = sel.clone();
    let what = format!("reading {}", sel.root.display());
    stream_from_producer(writer, what, progress, move |sink| {
        write_selection_tar(&sel, sink)
    })
    .await
}

/// Imports the selected manifest as `reference` (skopeo `oci:` in the guest); the engine's
/// output goes to `out`/`err`. A non-zero status means the engine refused the image.
pub async fn import_selected(
    transport: &dyn Transport,
    sel: &PlatformSelection,
    reference: &str,
    out: &mut (dyn AsyncWrite + Unpin + Send),
    err: &mut (dyn AsyncWrite + Unpin + Send),
    progress: StreamProgress<'_>,
) -> Result<ExitStatus, OpError> {
    let conn = request_import(transport, reference).await?;
    finish_import(conn, sel, out, err, progress).await
}

/// Like [`import_selected`], for the guest's own arch (from the connection's `Hello`): the
/// platform is chosen once the agent has said what it is. A selection failure closes the
/// connection before any data is sent. Selection notes and warnings go to `err`.
pub async fn import_oci_for_guest(
    transport: &dyn Transport,
    root: &Path,
    reference: &str,
    out: &mut (dyn AsyncWrite + Unpin + Send),
    err: &mut (dyn AsyncWrite + Unpin + Send),
    progress: StreamProgress<'_>,
) -> Result<ExitStatus, OpError> {
    let conn = request_import(transport, reference).await?;
    let guest = conn.hello().arch.clone();
    let arch: Arch = guest.parse().map_err(|_| OpError::Io {
        context: format!("selecting the platform of {}", root.display()),
        source: io::Error::other(format!("the guest reports an unknown arch {guest:?}")),
    })?;
    let sel = select_platform(root, &target_platform(arch)).map_err(|e| OpError::Io {
        context: format!("selecting the platform of {}", root.display()),
        source: io::Error::other(e.to_string()),
    })?;
    let notes = sel.note().into_iter().chain(sel.warnings.iter().cloned());
    for n in notes {
        let _ = tokio::io::AsyncWriteExt::write_all(err, format!("{n}\n").as_bytes()).await;
    }
    finish_import(conn, &sel, out, err, progress).await
}

async fn request_import(transport: &dyn Transport, reference: &str) -> Result<AgentConn, OpError> {
    Ok(AgentConn::request(
        transport,
        Request::ImportOci {
            reference: reference.to_string(),
        },
    )
    .await?)
}

async fn finish_import(
    conn: AgentConn,
    sel: &PlatformSelection,
    out: &mut (dyn AsyncWrite + Unpin + Send),
    err: &mut (dyn AsyncWrite + Unpin + Send),
    progress: StreamProgress<'_>,
) -> Result<ExitStatus, OpError> {
    let (mut reader, mut writer, _) = conn.into_split();
    send_selection_as_tar(&mut writer, sel, progress).await?;
    super::import::relay_import_output(&mut reader, out, err).await
}
