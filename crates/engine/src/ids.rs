//! The few identifier types every engine shares.

use std::sync::Arc;

/// Opaque bytes shared cheaply between the log, messages and the driver.
pub type Payload = Arc<[u8]>;

/// Declares a `u64` id newtype that prints as its number; engines use it for their own
/// ids too (Raft's `Term`).
#[macro_export]
macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u64);

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

id_newtype!(
    /// A member of a group. Zero is never a valid member id.
    NodeId
);
id_newtype!(
    /// A position in the agreed order (log index, slot, sequence number); 0 is "none".
    Index
);
id_newtype!(
    /// Names one durable write; `on_persisted(io)` reports it.
    IoId
);

impl Index {
    /// The next index (saturating: indexes near `u64::MAX` are refused at the gateway).
    pub fn next(self) -> Index {
        Index(self.0.saturating_add(1))
    }

    /// The previous index, saturating at zero.
    pub fn prev(self) -> Index {
        Index(self.0.saturating_sub(1))
    }
}
