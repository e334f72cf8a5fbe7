//! Runs the frame-decoder fuzz target's body on stable Rust, in CI: over the seed frames, their
//! concatenation, and deterministic mutations of them (bit flips, truncations, length-field
//! damage, splices). The libFuzzer target in `fuzz/` explores further; this keeps every decoder
//! change honest without nightly.

use vcontainer_protocol::fuzzing::decode_stream;
use vcontainer_protocol::seeds::seed_frames;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut XorShift, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => v.truncate(rng.below(v.len() + 1)),
            2 if v.len() >= 4 => {
                // Damage the length field.
                let i = rng.below(4);
                v[i] = rng.next() as u8;
            }
            3 => {
                let at = rng.below(v.len() + 1);
                let bytes: Vec<u8> = (0..rng.below(16)).map(|_| rng.next() as u8).collect();
                v.splice(at..at, bytes);
            }
            4 => {
                let cut = rng.below(other.len() + 1);
                v.extend_from_slice(&other[..cut]);
            }
            _ => {
                if !v.is_empty() {
                    let i = rng.below(v.len());
                    v[i] = [0x00, 0x7f, 0x80, 0xff][rng.below(4)];
                }
            }
        }
    }
    v
}

#[test]
fn seeds_and_their_concatenation_decode() {
    let seeds = seed_frames();
    for s in &seeds {
        decode_stream(s);
    }
    decode_stream(&seeds.concat());
}

#[test]
fn mutated_seeds_never_panic() {
    let seeds = seed_frames();
    let mut rng = XorShift(0x1234_5678_9abc_def1);
    let mut executions = 0usize;
    for _ in 0..40 {
        for (i, s) in seeds.iter().enumerate() {
            let other = &seeds[(i + 1) % seeds.len()];
            decode_stream(&mutate(&mut rng, s, other));
            executions += 1;
        }
    }
    assert!(executions > 1000);
}
