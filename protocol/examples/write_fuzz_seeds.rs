//! Writes the protocol seed corpora for libFuzzer:
//! `cargo run -p vcontainer-protocol --example write_fuzz_seeds -- fuzz/seeds`
//! writes `fuzz/seeds/frame_decoder` (one frame per file, plus a whole exchange) and
//! `fuzz/seeds/messages` (a selector byte and one payload per file). A path ending in
//! `frame_decoder` (the old form) writes only the frame seeds there.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let arg = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/seeds".into()),
    );
    let (frames_dir, messages_dir) = if arg.ends_with("frame_decoder") {
        (arg, None)
    } else {
        (arg.join("frame_decoder"), Some(arg.join("messages")))
    };
    std::fs::create_dir_all(&frames_dir)?;
    let frames = vcontainer_protocol::seeds::seed_frames();
    for (i, frame) in frames.iter().enumerate() {
        std::fs::write(frames_dir.join(format!("seed-{i:02}.bin")), frame)?;
    }
    // A whole conversation in one stream, as the host reads it off a connection.
    std::fs::write(frames_dir.join("stream-all.bin"), frames.concat())?;
    if let Some(dir) = messages_dir {
        std::fs::create_dir_all(&dir)?;
        for (i, p) in vcontainer_protocol::seeds::seed_payloads()
            .iter()
            .enumerate()
        {
            std::fs::write(dir.join(format!("seed-{i:02}.bin")), p)?;
        }
    }
    Ok(())
}
