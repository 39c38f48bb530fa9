//! The `#[unsync]` attribute of [`unsync-exec`](https://docs.rs/unsync-exec). Use it through
//! that crate (`use unsync::unsync;`), which documents it.
//!
//! This crate is syntax only: it reads the options and the function, refuses what cannot work
//! with an error pointing at the offending token, and rewrites the function into a call of
//! `unsync::__private::*`. Every behaviour lives in `unsync-core`.

#![forbid(unsafe_code)]

mod attr;
mod cpu_bound;
mod expand;
mod validate;

use proc_macro::TokenStream;

/// Run the function in the background and return an `unsync::Unfinished` handle at once.
/// See the `unsync-exec` crate documentation.
#[proc_macro_attribute]
pub fn unsync(args: TokenStream, item: TokenStream) -> TokenStream {
    let item2: proc_macro2::TokenStream = item.clone().into();
    let result = attr::Options::parse(args.into()).and_then(|options| {
        let function: syn::ItemFn = syn::parse2(item2.clone()).map_err(|e| {
            syn::Error::new(
                e.span(),
                format!("#[unsync] goes on a function (`fn` or `async fn`): {e}"),
            )
        })?;
        validate::check(&options, &function)?;
        Ok(expand::expand(&options, function))
    });
    match result {
        Ok(tokens) => tokens.into(),
        // Keep the item so that the rest of the crate still type-checks around the error.
        Err(error) => {
            let error = error.to_compile_error();
            let kept = validate::without_elided_return_borrows(item2);
            quote::quote!(#error #kept).into()
        }
    }
}
