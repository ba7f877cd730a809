//! postcard as the tarpc serialisation format: compact, maintained, and the same format the shim
//! protocol uses.

use std::io;
use std::marker::PhantomData;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use tarpc::tokio_serde::{Deserializer, Serializer};
use tokio_util::bytes::{Bytes, BytesMut};

/// Marks the codec as producing `Item` and consuming `SinkItem` without owning either, so it is
/// Send + Sync whatever they are.
type Direction<Item, SinkItem> = PhantomData<(fn() -> Item, fn(SinkItem))>;

/// A tokio-serde codec that encodes `SinkItem` and decodes `Item` with postcard.
pub struct Postcard<Item, SinkItem>(Direction<Item, SinkItem>);

impl<Item, SinkItem> Default for Postcard<Item, SinkItem> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<Item, SinkItem: Serialize> Serializer<SinkItem> for Postcard<Item, SinkItem> {
    type Error = io::Error;

    fn serialize(self: Pin<&mut Self>, item: &SinkItem) -> Result<Bytes, Self::Error> {
        postcard::to_stdvec(item).map(Bytes::from).map_err(io::Error::other)
    }
}

impl<Item: for<'de> Deserialize<'de>, SinkItem> Deserializer<Item> for Postcard<Item, SinkItem> {
    type Error = io::Error;

    fn deserialize(self: Pin<&mut Self>, src: &BytesMut) -> Result<Item, Self::Error> {
        postcard::from_bytes(src).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}
