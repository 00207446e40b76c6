//! The CPU work the `tracker` guest does for every connected client at every
//! tick: `iterations` rounds of `v = random() * sqrt(v)`, as the socket.io
//! servers of this kind of scaling test do. Shared with the native
//! benchmark, which measures what one client-tick costs without wasm.

/// Default rounds per client-tick.
pub const DEFAULT_ITERATIONS: u32 = 5000;

/// Runs one client-tick's work from `seed`; returns the final value.
pub fn work(iterations: u32, seed: u64) -> f64 {
    // xorshift64*: a fast generator, like the Math.random of the JS servers.
    let mut state = seed | 1;
    let mut v = 1.0f64;
    for _ in 0..iterations {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let random = (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
        v = random * v.sqrt();
    }
    v
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_value_stays_in_range_and_depends_on_the_seed() {
        let a = super::work(5000, 1);
        assert!((0.0..1.0).contains(&a), "{a}");
        assert_eq!(a, super::work(5000, 1));
        assert_ne!(a, super::work(5000, 2));
    }
}
