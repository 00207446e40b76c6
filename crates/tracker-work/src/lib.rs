//! The CPU work the `tracker` guest does for every connected client at every
//! tick: `iterations` rounds of `v = random() * sqrt(v)`, as the socket.io
//! servers of this kind of scaling test do. Shared with the native
//! benchmark, which measures what one client-tick costs without wasm.

/// Default rounds per client-tick.
pub const DEFAULT_ITERATIONS: u32 = 5000;

/// Rounds run as one straight-line block ([`Rounds::block`]).
///
/// Why: compiled wasm checks the epoch (the host's deadline) at every loop
/// header, and in a loop this tight the check and the spill it forces (its
/// slow path is a call, which clobbers the register holding `v`) cost about
/// a fifth of the time. One check per 16 rounds costs about 1%, and 16
/// rounds take about 100 ns, far inside the deadline's 10 ms precision.
/// Native code runs at the same speed either way.
///
/// The block is written out rather than left to the compiler's unroller:
/// with LTO, loops are unrolled at link time under the guest's `opt-level`,
/// and the size-tuned one the guests were once built with left this one
/// rolled; written out, it does not depend on the profile.
const BLOCK: u32 = 16;

/// Runs one client-tick's work from `seed`; returns the final value.
pub fn work(iterations: u32, seed: u64) -> f64 {
    let mut rounds = Rounds { state: seed | 1, v: 1.0 };
    for _ in 0..iterations / BLOCK {
        rounds.block();
    }
    for _ in 0..iterations % BLOCK {
        rounds.next();
    }
    rounds.v
}

/// The generator and the value the rounds carry.
struct Rounds {
    /// xorshift64* state: a fast generator, like the Math.random of the JS servers.
    state: u64,
    v: f64,
}

impl Rounds {
    /// [`BLOCK`] rounds, as straight-line code.
    #[inline(always)]
    fn block(&mut self) {
        self.four();
        self.four();
        self.four();
        self.four();
    }

    #[inline(always)]
    fn four(&mut self) {
        self.next();
        self.next();
        self.next();
        self.next();
    }

    #[inline(always)]
    fn next(&mut self) {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let random = (self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
        self.v = random * self.v.sqrt();
    }
}

#[cfg(test)]
mod tests {
    /// The work as one plain loop of rounds: what `work` computes, block by block.
    fn plain(iterations: u32, seed: u64) -> f64 {
        let mut rounds = super::Rounds { state: seed | 1, v: 1.0 };
        for _ in 0..iterations {
            rounds.next();
        }
        rounds.v
    }

    #[test]
    fn the_value_stays_in_range_and_depends_on_the_seed() {
        let a = super::work(5000, 1);
        assert!((0.0..1.0).contains(&a), "{a}");
        assert_eq!(a, super::work(5000, 1));
        assert_ne!(a, super::work(5000, 2));
    }

    #[test]
    fn blocks_compute_exactly_what_one_loop_does() {
        for iterations in [0, 1, 15, 16, 17, 31, 32, 100, 4999, 5000, 5001] {
            for seed in [0, 1, 2, 42, u64::MAX] {
                let (blocks, one_loop) = (super::work(iterations, seed), plain(iterations, seed));
                assert_eq!(blocks.to_bits(), one_loop.to_bits(), "{iterations} rounds from seed {seed}");
            }
        }
    }
}
