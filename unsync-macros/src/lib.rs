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
mod stream;
mod validate;

use proc_macro::TokenStream;

/// Run the function in the background and return an `unsync::Unfinished` handle at once.
/// See the `unsync-exec` crate documentation.
#[proc_macro_attribute]
pub fn unsync(args: TokenStream, item: TokenStream) -> TokenStream {
    let item: proc_macro2::TokenStream = item.into();
    let function = match syn::parse2::<syn::ItemFn>(item.clone()) {
        Ok(function) => function,
        Err(e) => {
            let error = syn::Error::new(
                e.span(),
                format!("#[unsync] goes on a function (`fn` or `async fn`): {e}"),
            )
            .to_compile_error();
            return quote::quote!(#error #item).into();
        }
    };
    let options = attr::Options::parse(args.into());
    let checked = options.as_ref().map_err(Clone::clone).and_then(|options| {
        validate::check(options, &function)?;
        Ok(options)
    });
    match checked {
        Ok(options) => expand::expand(options, function).into(),
        // As tokio's attributes do: the error, plus the function with the signature callers
        // expect (`-> Unfinished<T>`), so that they type-check and only the real error shows.
        Err(error) => {
            let krate = options.map_or_else(|_| attr::Options::default_crate(), |o| o.krate);
            let error = error.to_compile_error();
            let stand_in = validate::stand_in(&krate, function);
            quote::quote!(#error #stand_in).into()
        }
    }
}
