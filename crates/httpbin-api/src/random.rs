//! CPython's `random` module, as far as `/bytes/{n}?seed=S` needs it:
//! MT19937 seeded by `random.seed(int)` (`init_by_array` over the 32-bit
//! words of the seed's absolute value) and `randint(0, 255)`, so seeded
//! bytes equal httpbin's.

const N: usize = 624;
const M: usize = 397;

/// The Mersenne Twister, as `_randommodule.c` runs it.
pub struct PythonRandom {
    state: [u32; N],
    index: usize,
}

impl PythonRandom {
    /// `random.seed(seed)` for an integer seed.
    pub fn seeded(seed: i128) -> PythonRandom {
        let mut magnitude = seed.unsigned_abs();
        let mut key = Vec::new();
        while magnitude > 0 {
            key.push(magnitude as u32);
            magnitude >>= 32;
        }
        if key.is_empty() {
            key.push(0);
        }
        PythonRandom::by_array(&key)
    }

    fn by_seed(seed: u32) -> PythonRandom {
        let mut state = [0u32; N];
        state[0] = seed;
        for i in 1..N {
            state[i] = 1_812_433_253u32.wrapping_mul(state[i - 1] ^ (state[i - 1] >> 30)).wrapping_add(i as u32);
        }
        PythonRandom { state, index: N }
    }

    fn by_array(key: &[u32]) -> PythonRandom {
        let mut mt = PythonRandom::by_seed(19_650_218);
        let s = &mut mt.state;
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..N.max(key.len()) {
            s[i] = (s[i] ^ (s[i - 1] ^ (s[i - 1] >> 30)).wrapping_mul(1_664_525)).wrapping_add(key[j]).wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                s[0] = s[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            s[i] = (s[i] ^ (s[i - 1] ^ (s[i - 1] >> 30)).wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                s[0] = s[N - 1];
                i = 1;
            }
        }
        s[0] = 0x8000_0000;
        mt
    }

    /// `genrand_uint32`.
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    fn twist(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        let mag = |y: u32| if y & 1 == 1 { 0x9908_b0df } else { 0 };
        for k in 0..N {
            let y = (self.state[k] & UPPER) | (self.state[(k + 1) % N] & LOWER);
            self.state[k] = self.state[(k + M) % N] ^ (y >> 1) ^ mag(y);
        }
        self.index = 0;
    }

    /// `randint(0, 255)`: `_randbelow(256)` draws 9 bits (256's bit
    /// length) and draws again while the result is 256 or more.
    pub fn byte(&mut self) -> u8 {
        loop {
            let r = self.next_u32() >> (32 - 9);
            if r < 256 {
                return r as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PythonRandom;

    #[test]
    fn seeded_draws_equal_cpythons() {
        // python3 -c "import random; random.seed(0); print([random.getrandbits(32) for _ in range(3)])"
        let mut r = PythonRandom::seeded(0);
        assert_eq!([r.next_u32(), r.next_u32(), r.next_u32()], [3626764237, 1654615998, 3255389356]);
        // python3 -c "import random; random.seed(42); print(bytes(random.randint(0, 255) for _ in range(8)).hex())"
        let mut r = PythonRandom::seeded(42);
        let bytes: Vec<u8> = (0..8).map(|_| r.byte()).collect();
        assert_eq!(hex(&bytes), "39 0c 8c 7d 72 47 34 2c");
        // A seed of more than one 32-bit word, negative: random.seed(-2**40-5)
        let mut r = PythonRandom::seeded(-(1 << 40) - 5);
        let bytes: Vec<u8> = (0..8).map(|_| r.byte()).collect();
        assert_eq!(hex(&bytes), "89 0e 17 54 28 44 7a 46");
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
    }
}
