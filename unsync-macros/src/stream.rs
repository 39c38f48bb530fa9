//! Streaming functions: a declared return type `impl Iterator<Item = T>` or
//! `impl Stream<Item = T>` makes the function return `UnfinishedStream<T>`, its producer
//! driven in the background.

use syn::{ReturnType, Type};

/// What drives a streaming function's producer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `impl Iterator<Item = T>`: a blocking-pool thread.
    Iterator,
    /// `impl Stream<Item = T>`: a task on the async runtime.
    Stream,
}

pub(crate) struct Streaming<'a> {
    pub(crate) kind: Kind,
    /// `T`.
    pub(crate) item: &'a Type,
    /// The whole `impl ...` type, for errors.
    pub(crate) ty: &'a syn::TypeImplTrait,
}

/// The streaming kind and item type of a function returning `impl Iterator<Item = T>` or
/// `impl Stream<Item = T>` (any path ending in `Iterator` or `Stream`, other bounds besides).
pub(crate) fn streaming(output: &ReturnType) -> Option<Streaming<'_>> {
    let ReturnType::Type(_, ty) = output else {
        return None;
    };
    let Type::ImplTrait(ty) = &**ty else {
        return None;
    };
    ty.bounds.iter().find_map(|bound| {
        let syn::TypeParamBound::Trait(bound) = bound else {
            return None;
        };
        let last = bound.path.segments.last()?;
        let kind = if last.ident == "Iterator" {
            Kind::Iterator
        } else if last.ident == "Stream" {
            Kind::Stream
        } else {
            return None;
        };
        let syn::PathArguments::AngleBracketed(arguments) = &last.arguments else {
            return None;
        };
        arguments.args.iter().find_map(|argument| match argument {
            syn::GenericArgument::AssocType(assoc) if assoc.ident == "Item" => Some(Streaming {
                kind,
                item: &assoc.ty,
                ty,
            }),
            _ => None,
        })
    })
}
