//! A fixed-size bitmap with a "lowest word that may hold a zero" hint: the engine behind the
//! address and VLAN allocators.
//!
//! Taking the lowest free bit is amortized O(1) (the hint skips full words) and O(n/64) at
//! worst; setting or clearing a given bit is O(1). Bits the owner never hands out (reserved
//! addresses, VLANs 0, 1 and 4095) are kept set in memory so the search skips them, and are
//! left out of the stored form, which is the base64 of the little-endian bytes with trailing
//! zero bytes trimmed: an empty /16 stores as `""`, a full one as about 11 KB.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Bit set of `len` bits; bits past `len` in the last word are kept set.
#[derive(Clone)]
pub(crate) struct Bitmap {
    words: Vec<u64>,
    len: u32,
    /// Every word before `hint` is full.
    hint: usize,
    /// Set bits below `len`.
    ones: u32,
}

// Equality is on the bits only: the hint is a search aid, not state.
impl PartialEq for Bitmap {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.words == other.words
    }
}

impl Eq for Bitmap {}

// A /16 has 1,024 words: Debug shows the counts, not the bits.
impl fmt::Debug for Bitmap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bitmap")
            .field("len", &self.len)
            .field("ones", &self.ones)
            .finish_non_exhaustive()
    }
}

impl Bitmap {
    /// An all-clear bitmap of `len` bits.
    pub(crate) fn new(len: u32) -> Self {
        let word_count = len.div_ceil(64) as usize;
        let mut words = vec![0u64; word_count];
        let tail = len % 64;
        if tail != 0
            && let Some(last) = words.last_mut()
        {
            *last = !0u64 << tail;
        }
        Self {
            words,
            len,
            hint: 0,
            ones: 0,
        }
    }

    /// Number of always-set bits past `len` in the last word.
    fn padding(&self) -> u32 {
        (64 - self.len % 64) % 64
    }

    /// Number of bits.
    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    /// Number of set bits.
    pub(crate) fn ones(&self) -> u32 {
        self.ones
    }

    /// Whether bit `i` is set (bits past the end read as set).
    pub(crate) fn get(&self, i: u32) -> bool {
        if i >= self.len {
            return true;
        }
        self.words[(i / 64) as usize] & (1u64 << (i % 64)) != 0
    }

    /// Set bit `i`; false if it was already set or is out of range.
    pub(crate) fn set(&mut self, i: u32) -> bool {
        if self.get(i) {
            return false;
        }
        self.words[(i / 64) as usize] |= 1u64 << (i % 64);
        self.ones += 1;
        true
    }

    /// Clear bit `i`; false if it was already clear or is out of range.
    pub(crate) fn clear(&mut self, i: u32) -> bool {
        if i >= self.len || !self.get(i) {
            return false;
        }
        let w = (i / 64) as usize;
        self.words[w] &= !(1u64 << (i % 64));
        self.ones -= 1;
        self.hint = self.hint.min(w);
        true
    }

    /// Set the lowest clear bit and return its index, or `None` when every bit is set.
    pub(crate) fn set_lowest_clear(&mut self) -> Option<u32> {
        while self.hint < self.words.len() && self.words[self.hint] == !0u64 {
            self.hint += 1;
        }
        let word = *self.words.get(self.hint)?;
        let i = self.hint as u32 * 64 + word.trailing_ones();
        // Padding bits are set, so a clear bit found here is always below `len`.
        let fresh = self.set(i);
        debug_assert!(fresh);
        Some(i)
    }

    /// Indices of the set bits, in order.
    pub(crate) fn iter_ones(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(|&i| self.get(i))
    }

    /// The stored form: base64 of the bits, with `hidden` bits (the always-set ones) cleared
    /// and trailing zero bytes trimmed.
    pub(crate) fn encode(&self, hidden: &[u32]) -> String {
        let mut words = self.words.clone();
        if let Some(last) = words.last_mut() {
            let tail = self.len % 64;
            if tail != 0 {
                *last &= !(!0u64 << tail);
            }
        }
        for &i in hidden {
            if i < self.len {
                words[(i / 64) as usize] &= !(1u64 << (i % 64));
            }
        }
        let mut bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        while bytes.last() == Some(&0) {
            bytes.pop();
        }
        STANDARD.encode(bytes)
    }

    /// Read the stored form back, then set the `hidden` bits. Fails on bad base64, bits past
    /// `len`, or a hidden bit that was stored set.
    pub(crate) fn decode(len: u32, text: &str, hidden: &[u32]) -> Result<Self, String> {
        let bytes = STANDARD
            .decode(text)
            .map_err(|e| format!("bitmap is not base64: {e}"))?;
        let mut map = Self::new(len);
        if bytes.len() > len.div_ceil(8) as usize {
            return Err(format!("bitmap longer than {len} bits"));
        }
        // Word at a time: a /16 decodes in 1,024 steps, not 65,536.
        for (word, chunk) in map.words.iter_mut().zip(bytes.chunks(8)) {
            let mut le = [0u8; 8];
            le[..chunk.len()].copy_from_slice(chunk);
            let stored = u64::from_le_bytes(le);
            // Only the last word has padding, and `new` set exactly those bits.
            if stored & *word != 0 {
                return Err(format!("bits set past the end ({len} bits)"));
            }
            *word |= stored;
        }
        if let Some(&i) = hidden.iter().find(|&&i| map.get(i)) {
            return Err(format!("reserved bit {i} stored as allocated"));
        }
        map.ones = map.words.iter().map(|w| w.count_ones()).sum::<u32>() - map.padding();
        for &i in hidden {
            map.set(i);
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_clear_skips_set_bits_and_reuses_cleared() {
        let mut b = Bitmap::new(130);
        assert!(b.set(0));
        assert!(!b.set(0));
        assert_eq!(b.set_lowest_clear(), Some(1));
        for expected in 2..130 {
            assert_eq!(b.set_lowest_clear(), Some(expected));
        }
        assert_eq!(b.set_lowest_clear(), None);
        assert_eq!(b.ones(), 130);
        assert!(b.clear(70));
        assert!(!b.clear(70));
        assert!(!b.clear(500));
        assert_eq!(b.set_lowest_clear(), Some(70));
    }

    #[test]
    fn encode_round_trips_and_trims() {
        let hidden = [0, 1, 15];
        let mut b = Bitmap::new(16);
        for &h in &hidden {
            b.set(h);
        }
        assert_eq!(b.encode(&hidden), "");
        b.set(3);
        let text = b.encode(&hidden);
        let back = Bitmap::decode(16, &text, &hidden).expect("round trip");
        assert_eq!(back, b);
        assert!(Bitmap::decode(16, "AAAA", &hidden).is_err(), "too long");
        assert!(
            Bitmap::decode(16, "AQ==", &hidden).is_err(),
            "hidden bit 0 stored"
        );
        assert!(Bitmap::decode(12, "AAg=", &[]).is_ok(), "bit 11 is inside");
        assert!(
            Bitmap::decode(12, "ABA=", &[]).is_err(),
            "bit 12 is past the end"
        );
        assert!(Bitmap::decode(16, "!!", &hidden).is_err());
    }
}
