//! The byte format of the structured inputs (`request_to_response`, `lease_ops`), read
//! through `arbitrary`'s `Unstructured` and written back by [`Writer`], so that seed inputs
//! for the corpus are built from values rather than guessed bytes.
//!
//! Everything is one byte at a time: a choice among `n` is a byte modulo `n`, a flag is the
//! low bit of a byte, a number is its bytes little-endian, a byte string is a length byte and
//! then its bytes. A reader past the end reads zeros, so every input decodes to something and
//! a short input is a short session, never an error. [`Writer`] writes exactly what
//! [`Reader`] reads back, which `tests/fuzz_corpus.rs` checks on the seeds.

use arbitrary::Unstructured;

/// Reads values from fuzz input.
pub struct Reader<'a> {
    u: Unstructured<'a>,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader {
            u: Unstructured::new(data),
        }
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.u.is_empty()
    }

    /// The next byte; 0 once the input is used up.
    pub fn byte(&mut self) -> u8 {
        self.u.arbitrary::<u8>().unwrap_or(0)
    }

    /// A choice among `n` (at most 256) options.
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!((1..=256).contains(&n));
        usize::from(self.byte()) % n.max(1)
    }

    pub fn flag(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    /// `N` bytes, little-endian, as a `u64` (`N` at most 8).
    pub fn uint<const N: usize>(&mut self) -> u64 {
        let mut value = 0u64;
        for at in 0..N.min(8) {
            value |= u64::from(self.byte()) << (8 * at);
        }
        value
    }

    /// A length byte, at most `max`, then that many bytes (fewer if the input ends first).
    pub fn bytes(&mut self, max: usize) -> &'a [u8] {
        let len = usize::from(self.byte()).min(max).min(self.u.len());
        self.u.bytes(len).unwrap_or_default()
    }
}

/// Writes values so that [`Reader`] reads them back.
#[derive(Default)]
pub struct Writer {
    pub out: Vec<u8>,
}

impl Writer {
    pub fn byte(&mut self, byte: u8) -> &mut Self {
        self.out.push(byte);
        self
    }

    /// Option `index` of a choice ([`Reader::below`]).
    pub fn choice(&mut self, index: usize) -> &mut Self {
        self.byte(u8::try_from(index).expect("a choice is one byte"))
    }

    pub fn flag(&mut self, flag: bool) -> &mut Self {
        self.byte(u8::from(flag))
    }

    /// The low `N` bytes of `value`, little-endian ([`Reader::uint`]).
    pub fn uint<const N: usize>(&mut self, value: u64) -> &mut Self {
        self.out.extend_from_slice(&value.to_le_bytes()[..N.min(8)]);
        self
    }

    /// A byte string of at most 255 bytes ([`Reader::bytes`]).
    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.byte(u8::try_from(bytes.len()).expect("a byte string is at most 255 bytes"));
        self.out.extend_from_slice(bytes);
        self
    }
}
