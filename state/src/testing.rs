//! Helpers for tests and benchmarks of stores (not part of the API).

/// Fills `buf` with xorshift bytes continuing from `state`: nothing
/// compresses or repeats, so no layer can shortcut them.
pub fn fill_noise(buf: &mut [u8], state: &mut u64) {
    for chunk in buf.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let bytes = state.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

/// `len` pseudo-random bytes from `seed`.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0; len];
    fill_noise(&mut out, &mut (seed | 1));
    out
}
