//! Writes the seed frames as files for the libFuzzer corpus:
//! `cargo run -p vcontainer-protocol --example write_fuzz_seeds -- fuzz/seeds/frame_decoder`.

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/seeds/frame_decoder".into());
    std::fs::create_dir_all(&dir)?;
    for (i, frame) in vcontainer_protocol::seeds::seed_frames().iter().enumerate() {
        std::fs::write(format!("{dir}/seed-{i:02}.bin"), frame)?;
    }
    Ok(())
}
