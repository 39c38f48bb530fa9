//! The rewrite for `#[unsync(cpu_bound)]`: the body becomes a nested function, registered (with
//! a shim that decodes the arguments and encodes the result) in the link-time registry that
//! worker processes look functions up in (a `linkme` entry, or on Windows a constructor); the outer function encodes its arguments and hands
//! them to the process pool.
//!
//! A streaming function (`-> impl Iterator<Item = T>`) registers a stream shim instead, which
//! returns the iterator's items encoded one at a time, and returns an `UnfinishedStream<T>`.
//!
//! `#[unsync(remote)]` is the same rewrite (the same registry entry, so a remote worker finds
//! the function by the same key), handing the arguments to the remote executor instead, with
//! the call's `retries` and `timeout`.
//!
//! Arguments and results written `Vec<u8>`, `Vec<f64>`, ... (any primitive number) cross the
//! pipe as one block of bytes (`Bulk`), not element by element.

use proc_macro2::TokenStream;
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{AttrStyle, FnArg, ItemFn, Pat, ReturnType, Type};

use crate::attr::{Mode, Options};

const BULK_ELEMENTS: &[&str] = &[
    "u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64", "u128", "i128", "f32", "f64",
];

/// Whether `ty` is written `Vec<E>` for a primitive number `E`.
fn is_bulk(ty: &Type) -> bool {
    let Type::Path(path) = ty else { return false };
    let Some(last) = path.path.segments.last() else {
        return false;
    };
    if last.ident != "Vec" {
        return false;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return false;
    };
    match args.args.first() {
        Some(syn::GenericArgument::Type(Type::Path(elem))) if args.args.len() == 1 => elem
            .path
            .get_ident()
            .is_some_and(|i| BULK_ELEMENTS.iter().any(|e| i == e)),
        _ => false,
    }
}

/// FNV-1a of the signature's tokens: another signature is another function.
fn signature_hash(function: &ItemFn) -> u64 {
    let text = function.sig.to_token_stream().to_string();
    text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

pub(crate) fn expand(options: &Options, mut function: ItemFn) -> TokenStream {
    let krate = &options.krate;
    let private = quote!(#krate::__private);
    let name = function.sig.ident.to_string();
    let signature = signature_hash(&function);
    let output_ty: Type = match &function.sig.output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => (**ty).clone(),
    };
    // A streaming function (`-> impl Iterator<Item = T>`, see `stream`): its items cross one
    // by one.
    let item_ty: Option<Type> =
        crate::stream::streaming(&function.sig.output).map(|s| s.item.clone());

    // The body, as it was written, becomes a nested function.
    let body_inputs = function.sig.inputs.clone();
    let block = &function.block;
    let body_fn = quote! {
        fn __unsync_body(#body_inputs) -> #output_ty #block
    };

    // Each type is checked once, on its own tokens (`check_wire`, see `unsync::__private`);
    // the same checks open the shim, so that rustc prints their errors once for both. Every
    // other use of a checked type goes through its witness, and adds no error of its own.
    let mut names = Vec::new();
    let mut decoded_types = Vec::new();
    let mut encode = Vec::new();
    let mut unwrap = Vec::new();
    let mut checks = Vec::new();
    // A `cpu_bound` function from a vector to a vector of the same type: the call owns its
    // first such argument, and copies its result into it (`spawn_process_reusing`).
    let may_reuse =
        matches!(options.mode, Mode::CpuBound) && item_ty.is_none() && is_bulk(&output_ty);
    let output_tokens = output_ty.to_token_stream().to_string();
    let mut reused = None;
    for (index, input) in function.sig.inputs.iter_mut().enumerate() {
        let FnArg::Typed(arg) = input else {
            unreachable!("receivers are refused by validate")
        };
        let ident = match &*arg.pat {
            Pat::Ident(p) if p.subpat.is_none() && p.by_ref.is_none() => p.ident.clone(),
            other => format_ident!("__unsync_arg{}", index, span = other.span()),
        };
        *arg.pat = syn::parse_quote!(#ident);
        let ty = &*arg.ty;
        if is_bulk(ty) {
            // Always crosses: no check.
            decoded_types.push(quote!(#private::Bulk<#ty>));
            if may_reuse && reused.is_none() && ty.to_token_stream().to_string() == output_tokens {
                reused = Some(syn::Index::from(index));
                encode.push(quote!(#private::Bulk(#ident)));
            } else {
                encode.push(quote!(#private::Bulk(&#ident)));
            }
            unwrap.push(quote!(#ident.0));
        } else {
            let witness = format_ident!("__unsync_wire{}", index);
            checks
                .push(quote_spanned!(ty.span()=> let #witness = #private::check_wire::<#ty, _>();));
            decoded_types.push(quote!(_));
            encode.push(quote!(#private::Cross::lend(#witness, &#ident)));
            unwrap.push(quote!(#private::Cross::take(#witness, #ident)));
        }
        names.push(ident);
    }
    // `remote` adds its settings to the call; `cpu_bound` hands it to the process pool.
    let (spawn_bulk, spawn_checked, settings) = match options.mode {
        Mode::Remote(remote) => {
            let (retries, timeout_ms) = (remote.retries, remote.timeout_ms);
            (
                quote!(spawn_remote),
                quote!(spawn_remote_checked),
                quote!(, #private::RemoteOptions::new(#retries, #timeout_ms)),
            )
        }
        _ => (quote!(spawn_process), quote!(spawn_checked), quote!()),
    };
    let (encode_output, spawn) = if let Some(item_ty) = &item_ty {
        // Streaming: `cpu_bound` only (`remote` refuses it in `validate`).
        checks.push(
            quote_spanned!(item_ty.span()=> let __unsync_wire = #private::check_wire::<#item_ty, _>();),
        );
        let buffer = match &options.buffer {
            Some((n, _)) => quote!(#n),
            None => quote!(#private::DEFAULT_BUFFER),
        };
        (
            quote!(),
            quote!(#private::spawn_stream_checked(
                __unsync_wire,
                &__UNSYNC_WORKER_FN,
                #buffer,
                &(#(#encode,)*),
            )),
        )
    } else if is_bulk(&output_ty) {
        let spawn = match &reused {
            Some(position) => quote!(#private::spawn_process_reusing::<
                #private::Bulk<#output_ty>,
                #output_ty,
                _,
                _,
            >(
                &__UNSYNC_WORKER_FN,
                (#(#encode,)*),
                |__unsync_args| __unsync_args.#position.0,
            )),
            None => quote!(#private::#spawn_bulk::<#private::Bulk<#output_ty>, #output_ty>(
                &__UNSYNC_WORKER_FN,
                &(#(#encode,)*)
                #settings
            )),
        };
        (
            quote!(#private::encode_vec_result(__unsync_result, __unsync_out)),
            spawn,
        )
    } else {
        checks.push(
            quote_spanned!(output_ty.span()=> let __unsync_wire = #private::check_wire::<#output_ty, _>();),
        );
        (
            quote!(#private::encode_result(
                #private::Cross::lend(__unsync_wire, &__unsync_result),
                __unsync_out,
            )),
            quote!(#private::#spawn_checked(
                __unsync_wire,
                &__UNSYNC_WORKER_FN,
                &(#(#encode,)*)
                #settings
            )),
        )
    };

    let (outer_attrs, inner_attrs): (Vec<_>, Vec<_>) = function
        .attrs
        .drain(..)
        .partition(|a| matches!(a.style, AttrStyle::Outer));
    let output_span = function.sig.output.span();
    function.sig.output = match &item_ty {
        Some(item_ty) => {
            syn::parse_quote_spanned!(output_span=> -> #krate::UnfinishedStream<#item_ty>)
        }
        None => syn::parse_quote_spanned!(output_span=> -> #krate::Unfinished<#output_ty>),
    };
    let (shim, entry, inline) = match &item_ty {
        Some(item_ty) => {
            let buffer = match &options.buffer {
                Some((n, _)) => quote!(#n),
                None => quote!(#private::DEFAULT_BUFFER),
            };
            (
                quote! {
                    fn __unsync_shim(
                        __unsync_args: &[u8],
                    ) -> ::core::result::Result<#private::NextItem, #private::CodecError> {
                        #(#checks)*
                        let (#(#names,)*): (#(#decoded_types,)*) = #private::decode(__unsync_args)?;
                        ::core::result::Result::Ok(#private::next_item(
                            __unsync_wire,
                            __unsync_body(#(#unwrap),*),
                        ))
                    }
                },
                quote!(#private::WorkerFn::streaming(__UNSYNC_NAME, #signature, __unsync_shim)),
                quote!(#private::spawn_iter::<#item_ty, _, _>(
                    __UNSYNC_NAME,
                    #buffer,
                    move || __unsync_body(#(#names),*),
                )),
            )
        }
        None => (
            quote! {
                fn __unsync_shim(
                    __unsync_args: &[u8],
                    __unsync_out: &mut ::std::vec::Vec<u8>,
                ) -> ::core::result::Result<(), #private::CodecError> {
                    #(#checks)*
                    let (#(#names,)*): (#(#decoded_types,)*) = #private::decode_args(__unsync_args)?;
                    let __unsync_result = __unsync_body(#(#unwrap),*);
                    #encode_output
                }
            },
            quote!(#private::WorkerFn::new(__UNSYNC_NAME, #signature, __unsync_shim)),
            quote!(#private::run_inline(__UNSYNC_NAME, move || __unsync_body(#(#names),*))),
        ),
    };
    let vis = &function.vis;
    let sig = &function.sig;
    quote! {
        #(#outer_attrs)*
        #vis #sig {
            #(#inner_attrs)*
            #(#checks)*
            const __UNSYNC_NAME: &str = ::core::concat!(::core::module_path!(), "::", #name);
            #[allow(clippy::too_many_arguments)]
            #body_fn
            #shim
            #[cfg(not(windows))]
            #[#private::linkme::distributed_slice(#private::WORKER_FNS)]
            #[linkme(crate = #private::linkme)]
            static __UNSYNC_WORKER_FN: #private::WorkerFn = #entry;
            // Windows linkers drop `linkme` entries: a constructor registers the function.
            #[cfg(windows)]
            static __UNSYNC_WORKER_FN: #private::WorkerFn = #entry;
            #private::register_worker_fn!(__UNSYNC_WORKER_FN);
            if #private::in_worker() {
                return #inline;
            }
            #spawn
        }
    }
}
