//! The plugin set the processor's workers use: every feed's parser and
//! transforms, loaded once, under a generation number. `reload` builds a
//! new set and publishes it; the processor's workers pick it up at a batch
//! boundary. Its own module so that neither imports the other.

use std::collections::HashMap;

use crate::plugin::{ParserPlugin, TransformPlugin};

/// The plugins of one feed, loaded once; each worker instantiates its own.
#[derive(Clone)]
pub struct FeedChain {
    pub parser: (ParserPlugin, String),
    pub transforms: Vec<(TransformPlugin, String)>,
}

/// The plugins workers use, with the generation that identifies the set.
pub struct Chains {
    pub generation: u64,
    pub feeds: HashMap<String, FeedChain>,
}
