//! `resource ‖ owner`: how a lease keeps its key, and how a request forwarded to the shard
//! that owns it carries it, inside the value when short.

/// The most bytes of `resource ‖ owner` kept inside a [`Key`]: a 36-byte UUID and an owner of
/// up to 9 bytes. Longer keys take one allocation.
pub const INLINE: usize = 45;

/// `resource ‖ owner`, and where the owner starts.
#[derive(Debug)]
pub enum Key {
    /// `resource_len <= len <= INLINE` by construction.
    Inline {
        resource_len: u8,
        len: u8,
        bytes: [u8; INLINE],
    },
    /// `resource_len <= bytes.len()` by construction.
    Heap { resource_len: u32, bytes: Box<[u8]> },
}

impl Key {
    /// The resource id must be shorter than 4 GiB: the api bounds ids far below (1 MiB at
    /// most), and nothing else makes a key.
    pub fn new(resource: &[u8], owner: &[u8]) -> Key {
        let len = resource.len() + owner.len();
        if len <= INLINE {
            let mut bytes = [0; INLINE];
            let (resource_part, rest) = bytes.split_at_mut(resource.len());
            resource_part.copy_from_slice(resource);
            rest[..owner.len()].copy_from_slice(owner);
            // Both fit a `u8`: `len <= INLINE`.
            Key::Inline {
                resource_len: resource.len() as u8,
                len: len as u8,
                bytes,
            }
        } else {
            debug_assert!(u32::try_from(resource.len()).is_ok());
            Key::Heap {
                resource_len: resource.len() as u32,
                bytes: [resource, owner].concat().into_boxed_slice(),
            }
        }
    }

    /// `(resource, owner)`.
    #[inline]
    pub fn split(&self) -> (&[u8], &[u8]) {
        match self {
            Key::Inline {
                resource_len,
                len,
                bytes,
            } => bytes[..usize::from(*len)].split_at(usize::from(*resource_len)),
            Key::Heap {
                resource_len,
                bytes,
            } => bytes.split_at(*resource_len as usize),
        }
    }

    /// Puts `owner` in place of the owner, in place when the key keeps its form.
    pub fn set_owner(&mut self, owner: &[u8]) {
        match self {
            Key::Heap {
                resource_len,
                bytes,
            } if bytes.len() == *resource_len as usize + owner.len() => {
                bytes[*resource_len as usize..].copy_from_slice(owner);
            }
            _ => *self = Key::new(self.split().0, owner),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Protects both forms at their boundary: every split of every length around `INLINE`
    // gives back what went in, and so does every change of owner.
    #[test]
    fn both_forms_give_back_resource_and_owner() {
        let bytes: Vec<u8> = (0..400u32).map(|i| (i % 251) as u8).collect();
        for len in [0, 1, INLINE - 1, INLINE, INLINE + 1, 200] {
            for resource_len in [0, 1, len / 2, len.saturating_sub(1), len] {
                let (resource, owner) = bytes[..len].split_at(resource_len.min(len));
                let mut key = Key::new(resource, owner);
                assert_eq!(key.split(), (resource, owner), "len {len}");
                assert_eq!(matches!(key, Key::Inline { .. }), len <= INLINE);
                for new_owner in [&b""[..], b"o", &bytes[..INLINE], &bytes[..300]] {
                    key.set_owner(new_owner);
                    assert_eq!(key.split(), (resource, new_owner), "len {len}");
                }
            }
        }
    }
}
