//! What `#[unsync]` refuses, each with an error on the offending token that says what to write
//! instead. A background task outlives the call that started it, so nothing it takes may
//! borrow from the caller.

use quote::ToTokens;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{FnArg, GenericParam, ItemFn, ReturnType, Type};

use crate::attr::{Mode, Options};

/// Every error in the function at once, so that a newcomer fixes them in one round.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        let error = syn::Error::new_spanned(tokens, message);
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

pub(crate) fn check(options: &Options, function: &ItemFn) -> syn::Result<()> {
    let mut errors = Errors::default();
    let sig = &function.sig;
    if let Some(token) = &sig.constness {
        errors.push(
            token,
            "#[unsync] cannot run a `const fn` in the background: remove `const`",
        );
    }
    if let Some(token) = &sig.unsafety {
        errors.push(
            token,
            "#[unsync] does not take `unsafe fn`: its body moves into a background task, away from the caller's safety contract. Make the function safe and put `unsafe { ... }` blocks inside it",
        );
    }
    if let Some(abi) = &sig.abi {
        errors.push(abi, "#[unsync] cannot keep an `extern` ABI: the rewritten function returns an `Unfinished` handle. Remove `extern`");
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(variadic, "#[unsync] functions cannot be variadic");
    }
    match (options.mode, &sig.asyncness) {
        (Mode::Parallel, Some(token)) => errors.push(
            token,
            "#[unsync(parallel)] runs a plain `fn` on the rayon pool, where an `async fn` would only build its future. Remove `async` to run CPU work on rayon, or remove `(parallel)` to run this `async fn` on the async runtime",
        ),
        (Mode::CpuBound, Some(token)) => errors.push(
            token,
            "#[unsync(cpu_bound)] runs a plain `fn` in a worker process: remove `async`, or remove `(cpu_bound)` to run this `async fn` on the async runtime",
        ),
        (Mode::Remote(_), Some(token)) => errors.push(
            token,
            "#[unsync(remote)] runs a plain `fn` in a worker process on another machine: remove `async`, or remove `(remote)` to run this `async fn` on the async runtime",
        ),
        _ => {}
    }
    check_streaming(options, function, &mut errors);
    if options.mode.crosses() {
        check_cpu_bound(options.mode.option(), function, &mut errors);
    }
    for param in &sig.generics.params {
        if let GenericParam::Lifetime(lifetime) = param {
            errors.push(
                lifetime,
                format!(
                    "#[unsync] functions run after the call has returned, so they cannot take lifetime parameters like `{}`: make every argument owned (or `'static`)",
                    lifetime.lifetime
                ),
            );
        }
    }
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => {
                // `&self`, `&mut self`, and typed receivers that borrow: `self: Pin<&mut Self>`.
                let mut borrows = Borrows::default();
                borrows.visit_type(&receiver.ty);
                let borrowed = receiver.reference.is_some() || !borrows.found.is_empty();
                if borrowed {
                    errors.push(
                        receiver,
                        "#[unsync] methods run after the call has returned, so they cannot borrow `self`: take `self` by value, or `self: Arc<Self>` to share it between calls",
                    );
                }
            }
            FnArg::Typed(arg) => {
                let mut borrows = Borrows::default();
                borrows.visit_type(&arg.ty);
                for (tokens, message) in borrows.found {
                    errors.push(tokens, message);
                }
            }
        }
    }
    if let ReturnType::Type(_, ty) = &sig.output {
        let mut borrows = Borrows::default();
        borrows.visit_type(ty);
        if let Some((tokens, _)) = borrows.found.into_iter().next() {
            errors.push(
                tokens,
                "#[unsync] functions hand their result over after the call has returned, so it cannot borrow: return an owned type",
            );
        }
    }
    errors.finish()
}

/// A streaming function (see `stream`) runs where a producer may wait for its reader.
fn check_streaming(options: &Options, function: &ItemFn, errors: &mut Errors) {
    let Some(streaming) = crate::stream::streaming(&function.sig.output) else {
        if let Some((_, option)) = &options.buffer {
            errors.push(
                option,
                "`buffer` applies to streaming functions only: declare the return type as `impl Iterator<Item = T>` or `impl Stream<Item = T>`",
            );
        }
        return;
    };
    match options.mode {
        Mode::Parallel => errors.push(
            streaming.ty,
            "#[unsync(parallel)] cannot drive a streaming function: its producer waits whenever it is `buffer` items ahead of its reader, and would hold one of rayon's few threads meanwhile (stalling the pool's other work, or deadlocking it when the reader is a rayon job too). Remove `(parallel)` to drive the iterator on the blocking pool, and do each item's CPU work with rayon inside it (`par_iter` over a chunk, or an `#[unsync(parallel)]` helper per item); or return a `Vec` to keep `parallel`",
        ),
        Mode::CpuBound if streaming.kind == crate::stream::Kind::Stream => errors.push(
            streaming.ty,
            "#[unsync(cpu_bound)] streams an iterator: a worker process has no async runtime to drive a `Stream`. Return `impl Iterator<Item = T>`, or remove `(cpu_bound)` to drive the `Stream` on the async runtime",
        ),
        Mode::CpuBound => {}
        Mode::Remote(_) => errors.push(
            streaming.ty,
            "#[unsync(remote)] cannot stream yet: a remote worker does not send items as they are produced. Remove `(remote)` to drive the iterator on the blocking pool (calling `#[unsync(remote)]` functions for its heavy parts), or return a `Vec` to keep `remote`",
        ),
        Mode::Default => {
            if let (Some(token), crate::stream::Kind::Iterator) =
                (&function.sig.asyncness, streaming.kind)
            {
                errors.push(
                    token,
                    "an `async fn` returning `impl Iterator` would run its iterator on the async runtime, blocking a runtime thread between items: return `impl Stream<Item = T>` (for example `futures::stream::iter(...)`), or remove `async` to drive the iterator on the blocking pool",
                );
            }
        }
    }
}

/// The rules of a function that runs in another process: `#[unsync(cpu_bound)]` and
/// `#[unsync(remote)]` (`option` names which, in the errors).
fn check_cpu_bound(option: &str, function: &ItemFn, errors: &mut Errors) {
    let sig = &function.sig;
    let type_params = sig
        .generics
        .params
        .iter()
        .filter(|p| !matches!(p, GenericParam::Lifetime(_)));
    for param in type_params {
        errors.push(
            param,
            format!(
                "#[unsync({option})] functions cannot be generic: the worker process looks the function up by name, and every instance would need an entry of its own. Write one non-generic function per type"
            ),
        );
    }
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => errors.push(
                receiver,
                format!(
                    "#[unsync({option})] functions cannot be methods: `self` would have to be sent to another process. Make it a free function that takes the value as an argument"
                ),
            ),
            FnArg::Typed(arg) => {
                if let Type::ImplTrait(ty) = &*arg.ty {
                    errors.push(
                        ty,
                        format!(
                            "#[unsync({option})] functions cannot take `impl Trait` (a hidden generic): name the concrete type, which must be `Serialize + DeserializeOwned`"
                        ),
                    );
                }
            }
        }
    }
    if let ReturnType::Type(_, ty) = &sig.output {
        // A streaming return type has an error of its own (see `check_streaming`).
        if let (Type::ImplTrait(ty), None) = (&**ty, crate::stream::streaming(&sig.output)) {
            errors.push(
                ty,
                format!(
                    "#[unsync({option})] functions cannot return `impl Trait`: the parent process must know the concrete type to decode the result"
                ),
            );
        }
    }
}

fn last_ident_is(path: &syn::Path, name: &str) -> bool {
    path.segments.last().is_some_and(|s| s.ident == name)
}

/// A type as a user would write it (token streams print `std :: path :: Path`).
fn pretty(ty: &Type) -> String {
    let mut text = ty.to_token_stream().to_string();
    for (from, to) in [
        (" :: ", "::"),
        (":: ", "::"),
        (" < ", "<"),
        (" <", "<"),
        ("< ", "<"),
        (" >", ">"),
        (" ,", ","),
        ("& ", "&"),
    ] {
        text = text.replace(from, to);
    }
    text
}

/// Borrows in a type: references and lifetimes other than `'static`. Closure and fn-pointer
/// signatures (`Fn(&str)`, `fn(&str)`) are skipped: their lifetimes are their own.
#[derive(Default)]
struct Borrows {
    found: Vec<(proc_macro2::TokenStream, String)>,
}

impl<'ast> Visit<'ast> for Borrows {
    fn visit_type_reference(&mut self, reference: &'ast syn::TypeReference) {
        let is_static = reference
            .lifetime
            .as_ref()
            .is_some_and(|l| l.ident == "static");
        if is_static {
            return self.visit_type(&reference.elem);
        }
        let instead = match &*reference.elem {
            elem if reference.mutability.is_some() => format!(
                "take `{0}` itself and hand it back in the result, or share it as `Arc<Mutex<{0}>>`",
                pretty(elem)
            ),
            Type::Path(p) if last_ident_is(&p.path, "str") => {
                "write `String` here (a `&'static str` is fine too)".to_owned()
            }
            Type::Path(p) if last_ident_is(&p.path, "Path") => {
                "write `PathBuf` here (a `&'static Path` is fine too)".to_owned()
            }
            Type::Slice(s) => format!(
                "write `Vec<{}>` here (a `&'static` slice is fine too)",
                pretty(&s.elem)
            ),
            other => format!(
                "write `{0}` here, or `Arc<{0}>` to share it (a `&'static` reference is fine too)",
                pretty(other)
            ),
        };
        self.found.push((
            reference.to_token_stream(),
            format!(
                "#[unsync] functions run in the background after the call has returned, so their arguments cannot borrow from the caller: {instead}"
            ),
        ));
    }

    fn visit_lifetime(&mut self, lifetime: &'ast syn::Lifetime) {
        if lifetime.ident != "static" {
            self.found.push((
                lifetime.to_token_stream(),
                format!(
                    "#[unsync] functions run in the background after the call has returned, so their arguments cannot borrow from the caller: `{lifetime}` must be `'static`, or use an owned type"
                ),
            ));
        }
    }

    fn visit_type_bare_fn(&mut self, _: &'ast syn::TypeBareFn) {}

    fn visit_parenthesized_generic_arguments(
        &mut self,
        _: &'ast syn::ParenthesizedGenericArguments,
    ) {
    }
}

/// What a refused function becomes next to its error: the signature callers expect, returning
/// `Unfinished<T>` (without `async`, `const`, `unsafe` or an ABI), and a body that stands in for
/// the one that cannot run. Callers then type-check (`f(x).result()`), and the error the user
/// must fix is the only one.
///
/// Lifetimes that the return type leaves out (`-> &str`) become `'static` when no argument
/// lends one: otherwise rustc adds its own "missing lifetime specifier" error, whose advice
/// (borrow the argument) contradicts the one `#[unsync]` just gave.
pub(crate) fn stand_in(krate: &syn::Path, mut function: ItemFn) -> proc_macro2::TokenStream {
    struct StaticForElided;
    impl syn::visit_mut::VisitMut for StaticForElided {
        fn visit_type_reference_mut(&mut self, reference: &mut syn::TypeReference) {
            if reference.lifetime.is_none() {
                reference.lifetime = Some(syn::Lifetime::new("'static", reference.and_token.span));
            }
            syn::visit_mut::visit_type_reference_mut(self, reference);
        }
        fn visit_lifetime_mut(&mut self, lifetime: &mut syn::Lifetime) {
            if lifetime.ident == "_" {
                *lifetime = syn::Lifetime::new("'static", lifetime.apostrophe);
            }
        }
    }
    // With a borrowed argument the elided lifetime is that argument's: valid Rust, left as is.
    let borrows_an_argument = function.sig.inputs.iter().any(|input| match input {
        FnArg::Receiver(receiver) => receiver.reference.is_some(),
        FnArg::Typed(arg) => {
            let mut borrows = Borrows::default();
            borrows.visit_type(&arg.ty);
            !borrows.found.is_empty()
        }
    });
    let sig = &mut function.sig;
    let mut output: Type = match &sig.output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => (**ty).clone(),
    };
    if !borrows_an_argument {
        syn::visit_mut::VisitMut::visit_type_mut(&mut StaticForElided, &mut output);
    }
    let output_span = sig.output.span();
    sig.output = match crate::stream::streaming(&sig.output) {
        Some(streaming) => {
            let item = streaming.item;
            syn::parse_quote_spanned!(output_span=> -> #krate::UnfinishedStream<#item>)
        }
        None => syn::parse_quote_spanned!(output_span=> -> #krate::Unfinished<#output>),
    };
    sig.constness = None;
    sig.asyncness = None;
    sig.unsafety = None;
    sig.abi = None;
    sig.variadic = None;
    // The body is not compiled: its arguments are not "unused".
    function
        .attrs
        .retain(|a| matches!(a.style, syn::AttrStyle::Outer));
    function
        .attrs
        .push(syn::parse_quote!(#[allow(unused_variables)]));
    *function.block = syn::parse_quote!({
        ::core::unreachable!("#[unsync] refused this function at compile time")
    });
    function.to_token_stream()
}
