//! [`Name`]: a cheap, shareable string for dataset and field names.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

/// A dataset or field name.
///
/// Names repeat on every event of a batch, so they should not cost an
/// allocation each. A `Name` is either a `&'static str` — what
/// `float("bid", x)` makes, free — or a shared `Arc<str>` — what the SDK
/// makes once per distinct name when it decodes a batch; cloning either is
/// a copy or a reference-count increment.
///
/// It derefs to `str` and compares (and hashes) by content with `str`,
/// `&str`, `String` and other names.
#[derive(Clone)]
pub struct Name(Repr);

#[derive(Clone)]
enum Repr {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Name {
    /// A name from a string literal (or any `&'static str`), without
    /// allocating.
    pub const fn new_static(name: &'static str) -> Self {
        Name(Repr::Static(name))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Static(s) => s,
            Repr::Shared(s) => s,
        }
    }

    /// Whether both names point at the same bytes (a cheap test that implies
    /// equal content; unequal pointers say nothing).
    pub fn same_storage(&self, other: &Name) -> bool {
        let (a, b) = (self.as_str(), other.as_str());
        a.len() == b.len() && std::ptr::eq(a.as_ptr(), b.as_ptr())
    }
}

impl Default for Name {
    fn default() -> Self {
        Name::new_static("")
    }
}

impl Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<&'static str> for Name {
    fn from(s: &'static str) -> Self {
        Name::new_static(s)
    }
}

impl From<String> for Name {
    fn from(s: String) -> Self {
        Name(Repr::Shared(Arc::from(s)))
    }
}

impl From<&String> for Name {
    fn from(s: &String) -> Self {
        Name(Repr::Shared(Arc::from(s.as_str())))
    }
}

impl From<Arc<str>> for Name {
    fn from(s: Arc<str>) -> Self {
        Name(Repr::Shared(s))
    }
}

impl From<std::borrow::Cow<'static, str>> for Name {
    fn from(s: std::borrow::Cow<'static, str>) -> Self {
        match s {
            std::borrow::Cow::Borrowed(s) => Name::new_static(s),
            std::borrow::Cow::Owned(s) => s.into(),
        }
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        n.as_str().to_string()
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        self.same_storage(other) || self.as_str() == other.as_str()
    }
}

impl Eq for Name {}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Name {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<Name> for str {
    fn eq(&self, other: &Name) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Name> for &str {
    fn eq(&self, other: &Name) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<Name> for String {
    fn eq(&self, other: &Name) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Name) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Name) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn compares_by_content_whatever_the_storage() {
        let a = Name::from("bid");
        let b = Name::from(String::from("bid"));
        let c = Name::from(Arc::<str>::from("ask"));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, "bid");
        assert_eq!("bid", a);
        assert_eq!(b, String::from("bid"));
        assert!(c < a);
        assert_eq!(&*a, "bid");
        assert_eq!(format!("{a} {c:?}"), "bid \"ask\"");
        let set: HashSet<Name> = [a.clone(), b.clone()].into_iter().collect();
        assert_eq!(set.len(), 1);
        assert!(set.contains("bid"));
    }

    #[test]
    fn clones_share_storage() {
        let shared = Name::from(String::from("venue"));
        assert!(shared.clone().same_storage(&shared));
        let other = Name::from(String::from("venue"));
        assert!(!other.same_storage(&shared));
        assert_eq!(other, shared);
    }
}
