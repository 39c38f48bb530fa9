//! The options inside `#[unsync(...)]`.

use proc_macro2::TokenStream;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Meta, Token};

/// Where the function runs.
#[derive(Clone, Copy)]
pub(crate) enum Mode {
    /// `async fn` on the runtime, plain `fn` on the blocking pool.
    Default,
    /// The rayon pool.
    Parallel,
    /// The worker-process pool.
    CpuBound,
}

pub(crate) struct Options {
    pub(crate) mode: Mode,
    /// Path to the facade crate (`::unsync` unless renamed with `crate = "..."`).
    pub(crate) krate: syn::Path,
}

const EXPECTED: &str = "expected `parallel`, `cpu_bound`, or `crate = \"path\"` (for example `#[unsync]`, `#[unsync(parallel)]`, `#[unsync(cpu_bound)]`)";

impl Options {
    pub(crate) fn parse(args: TokenStream) -> syn::Result<Options> {
        let metas = Punctuated::<Meta, Token![,]>::parse_terminated
            .parse2(args)
            .map_err(|e| {
                syn::Error::new(e.span(), format!("cannot read the options: {EXPECTED}"))
            })?;
        let mut mode = Mode::Default;
        let mut krate = None;
        for meta in metas {
            match &meta {
                Meta::Path(path) if path.is_ident("parallel") || path.is_ident("cpu_bound") => {
                    if !matches!(mode, Mode::Default) {
                        return Err(syn::Error::new_spanned(
                            path,
                            "choose one of `parallel` (rayon threads in this process) and `cpu_bound` (worker processes)",
                        ));
                    }
                    mode = if path.is_ident("parallel") {
                        Mode::Parallel
                    } else {
                        Mode::CpuBound
                    };
                }
                Meta::NameValue(nv) if nv.path.is_ident("crate") => {
                    let syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(path),
                        ..
                    }) = &nv.value
                    else {
                        return Err(syn::Error::new_spanned(
                            &nv.value,
                            "write the path as a string: `crate = \"my_unsync\"`",
                        ));
                    };
                    krate = Some(path.parse::<syn::Path>()?);
                }
                Meta::NameValue(nv) if nv.path.is_ident("cpu_bound") => {
                    return Err(syn::Error::new_spanned(
                        &meta,
                        "write `#[unsync(cpu_bound)]`: the option takes no value (Python's `cpu_bound=True`)",
                    ));
                }
                _ => {
                    let name = meta
                        .path()
                        .get_ident()
                        .map_or_else(|| "this".to_owned(), |i| format!("`{i}`"));
                    return Err(syn::Error::new_spanned(
                        &meta,
                        format!("unknown #[unsync] option {name}: {EXPECTED}"),
                    ));
                }
            }
        }
        Ok(Options {
            mode,
            krate: krate.unwrap_or_else(|| syn::parse_quote!(::unsync)),
        })
    }
}
