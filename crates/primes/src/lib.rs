//! The n-th prime, computed two ways.
//!
//! This is the workload of the `prime` guest. It lives in its own
//! dependency-free crate so that the guest (compiled to wasm) and native code
//! (the benchmark's reference server, the unit tests) run exactly the same
//! algorithm, which keeps wasm-versus-native comparisons honest.

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

fn nth_prime_trial(n: u32) -> u64 {
    let n = n as usize;
    let mut found: Vec<u64> = Vec::with_capacity(n);
    found.push(2);
    let mut candidate = 3u64;
    while found.len() < n {
        // Only odd candidates; divide by odd primes (found[1..]) up to sqrt.
        let is_prime = found[1..].iter().take_while(|&&p| p * p <= candidate).all(|&p| !candidate.is_multiple_of(p));
        if is_prime {
            found.push(candidate);
        }
        candidate += 2;
    }
    found[n - 1]
}

/// An upper bound of the n-th prime: n (ln n + ln ln n) holds for n >= 6.
fn upper_bound(n: u32) -> usize {
    if n < 6 {
        return 13;
    }
    let n = n as f64;
    (n * (n.ln() + n.ln().ln())).ceil() as usize
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
