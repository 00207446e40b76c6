//! The n-th prime, computed two ways.
//!
//! This is the workload of the `prime` guest. It lives in its own small
//! crate so that the guest (compiled to wasm) and native code
//! (the benchmark's reference server, the unit tests) run exactly the same
//! algorithm, which keeps wasm-versus-native comparisons honest.
//!
//! `no_std` (with `alloc`), so that the `prime` guest can be built without
//! the standard library (see `guests/prime`); the logarithm comes from
//! `libm` (its one dependency) on both sides.

#![no_std]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;
use core::num::NonZeroU32;

/// The largest `n` the prime API accepts.
///
/// The millionth prime is 15,485,863: trial division takes about a second
/// there, and the sieve needs about 16 MB, which is what makes this input a
/// useful probe of the host's deadline and memory limits.
pub const MAX_N: u32 = 1_000_000;

/// Which algorithm computes the n-th prime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algo {
    /// Trial division by the primes found so far, up to the square root.
    Trial,
    /// Sieve of Eratosthenes up to an upper bound of the n-th prime.
    Sieve,
}

impl Algo {
    /// Parses the `algo` query parameter value.
    pub fn parse(s: &str) -> Option<Algo> {
        match s {
            "trial" => Some(Algo::Trial),
            "sieve" => Some(Algo::Sieve),
            _ => None,
        }
    }
}

/// The n-th prime (1-based: `nth_prime(1, _) == 2`), or `None` for `n == 0`.
pub fn nth_prime(n: u32, algo: Algo) -> Option<u64> {
    if n == 0 {
        return None;
    }
    Some(match algo {
        Algo::Trial => nth_prime_trial(n),
        Algo::Sieve => nth_prime_sieve(n),
    })
}

/// Trial division by the odd primes found so far, up to the square root.
///
/// In 32-bit integers: every prime up to the [`MAX_N`]-th (15,485,863)
/// fits, and a 32-bit division is what the hot loop needs. LLVM's x86-64
/// code divides 64-bit operands that fit in 32 bits with the 32-bit
/// instruction anyway; Cranelift (the wasm guest's compiler) emits the
/// 64-bit one as written. Only squares are taken in 64 bits, where they
/// could overflow.
///
/// The primes are kept as [`NonZeroU32`]: a remainder by a `u32` must
/// first test the divisor for zero (Rust panics there), which costs a
/// test and a branch per division, and in the wasm guest a taken jump
/// too, since Cranelift places the zero case inline. A remainder by a
/// `NonZeroU32` needs no test: the type says what is true of every prime.
fn nth_prime_trial(n: u32) -> u64 {
    let n = n as usize;
    let mut found: Vec<NonZeroU32> = Vec::with_capacity(n);
    found.push(NonZeroU32::new(2).expect("2 is not 0"));
    // found[1..divisors] are the odd primes whose square is at most the
    // candidate: the candidate only grows, so this end only moves right,
    // and by one place at most per candidate (the squares of two odd
    // primes p < q are at least 4p + 4 apart, more than the step of 2), so
    // an `if` does what a loop would, without a loop header for compiled
    // wasm to check the epoch at for every candidate.
    let mut divisors = 1;
    let mut candidate = 3u32;
    while found.len() < n {
        if divisors < found.len() && square(found[divisors]) <= u64::from(candidate) {
            divisors += 1;
        }
        if has_no_divisor(candidate, &found[1..divisors]) {
            found.push(NonZeroU32::new(candidate).expect("candidates start at 3"));
        }
        candidate += 2;
    }
    u64::from(found[n - 1].get())
}

fn square(p: NonZeroU32) -> u64 {
    u64::from(p.get()) * u64::from(p.get())
}

/// Whether no prime of `divisors` divides `candidate`, trying them in order
/// and stopping at the first that does.
///
/// Four at a time, written out: compiled wasm checks the epoch (the host's
/// deadline) at every loop header, and one check per four divisions costs
/// less than one per division. The last one to three are written out too,
/// with no loop. The divisions and the order they are tried in are the
/// same as in one plain loop.
fn has_no_divisor(candidate: u32, divisors: &[NonZeroU32]) -> bool {
    let mut fours = divisors.chunks_exact(4);
    for four in &mut fours {
        if candidate % four[0] == 0 || candidate % four[1] == 0 || candidate % four[2] == 0 || candidate % four[3] == 0 {
            return false;
        }
    }
    let rest = fours.remainder();
    let divides = |i: usize| rest.get(i).is_some_and(|&p| candidate % p == 0);
    !(divides(0) || divides(1) || divides(2))
}

/// An upper bound of the n-th prime: n (ln n + ln ln n) holds for n >= 6.
fn upper_bound(n: u32) -> usize {
    if n < 6 {
        return 13;
    }
    let n = n as f64;
    libm::ceil(n * (libm::log(n) + libm::log(libm::log(n)))) as usize
}

fn nth_prime_sieve(n: u32) -> u64 {
    let limit = upper_bound(n);
    let mut composite = vec![false; limit + 1];
    let mut count = 0u32;
    for i in 2..=limit {
        if composite[i] {
            continue;
        }
        count += 1;
        if count == n {
            return i as u64;
        }
        let mut multiple = i * i;
        while multiple <= limit {
            composite[multiple] = true;
            multiple += i;
        }
    }
    unreachable!("upper_bound({n}) = {limit} is below the n-th prime")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[(u32, u64)] =
        &[(1, 2), (2, 3), (3, 5), (4, 7), (5, 11), (6, 13), (7, 17), (300, 1987), (1000, 7919), (10000, 104729)];

    #[test]
    fn trial_division_matches_known_primes() {
        for &(n, p) in KNOWN {
            assert_eq!(nth_prime(n, Algo::Trial), Some(p), "n = {n}");
        }
    }

    #[test]
    fn sieve_matches_known_primes() {
        for &(n, p) in KNOWN {
            assert_eq!(nth_prime(n, Algo::Sieve), Some(p), "n = {n}");
        }
    }

    #[test]
    fn both_algorithms_agree_on_every_n_up_to_2000() {
        for n in 1..=2000 {
            assert_eq!(nth_prime(n, Algo::Trial), nth_prime(n, Algo::Sieve), "n = {n}");
        }
    }

    #[test]
    fn trial_division_agrees_with_the_sieve_far_into_the_range() {
        // Past n = 2000, where the end of the divisors has moved often and
        // the divisor lists are long enough for many blocks of four.
        for n in [4_999, 5_000, 5_001, 100_000] {
            assert_eq!(nth_prime(n, Algo::Trial), nth_prime(n, Algo::Sieve), "n = {n}");
        }
    }

    #[test]
    fn divisors_are_tried_four_at_a_time_with_the_answer_of_one_loop() {
        let primes = [3, 5, 7, 11, 13, 17, 19, 23, 29, 31].map(|p| NonZeroU32::new(p).unwrap());
        for candidate in (3..2_000u32).step_by(2) {
            for end in 0..=primes.len() {
                let divisors = &primes[..end];
                let one_loop = divisors.iter().all(|&p| candidate % p.get() != 0);
                assert_eq!(has_no_divisor(candidate, divisors), one_loop, "{candidate} by {divisors:?}");
            }
        }
    }

    #[test]
    fn the_maximum_is_computable() {
        assert_eq!(nth_prime(MAX_N, Algo::Sieve), Some(15_485_863));
    }

    #[test]
    fn zero_has_no_prime() {
        assert_eq!(nth_prime(0, Algo::Trial), None);
        assert_eq!(nth_prime(0, Algo::Sieve), None);
    }

    #[test]
    fn algo_names_parse() {
        assert_eq!(Algo::parse("trial"), Some(Algo::Trial));
        assert_eq!(Algo::parse("sieve"), Some(Algo::Sieve));
        assert_eq!(Algo::parse("Sieve"), None);
    }
}
