//! The rewrite: same name, visibility, generics, attributes and docs; `async` dropped; the
//! return type `T` becomes `Unfinished<T>`; the body moves into a task handed to
//! `unsync::__private`. A streaming function (declared to return `impl Iterator<Item = T>` or
//! `impl Stream<Item = T>`, see `stream`) returns `UnfinishedStream<T>` instead, its body the
//! producer.
//!
//! Every argument is moved into the task as a whole (`let x = x;`), so it is dropped when the
//! body ends, as in a normal call, not when the call returns.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{AttrStyle, FnArg, ItemFn, Pat, ReturnType, Type};

use crate::attr::{Mode, Options};
use crate::stream::Kind;

pub(crate) fn expand(options: &Options, mut function: ItemFn) -> TokenStream {
    if options.mode.crosses() {
        return crate::cpu_bound::expand(options, function);
    }
    let krate = &options.krate;
    let name = function.sig.ident.to_string();
    let task = quote!(::core::concat!(::core::module_path!(), "::", #name));
    let output = match &function.sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => quote!(#ty),
    };
    let annotate =
        !matches!(&function.sig.output, ReturnType::Type(_, ty) if contains_impl_trait(ty));

    let mut moves = Vec::new();
    let mut send_checks = Vec::new();
    for (index, input) in function.sig.inputs.iter_mut().enumerate() {
        match input {
            FnArg::Receiver(receiver) => {
                let self_token = &receiver.self_token;
                let self_ident = Ident::new("self", self_token.span);
                send_checks.push(match receiver.colon_token {
                    Some(_) => send_check(&self_ident, &receiver.ty),
                    None => send_check(&self_ident, self_token),
                });
                moves.push(
                    quote_spanned!(self_token.span=> #krate::__private::take_whole(&#self_token);),
                );
            }
            FnArg::Typed(arg) => match &mut *arg.pat {
                Pat::Ident(ident) if ident.subpat.is_none() && ident.by_ref.is_none() => {
                    let mutability = ident.mutability.take();
                    let binding = &ident.ident;
                    send_checks.push(send_check(binding, &arg.ty));
                    // Spanned at the argument, so that errors about moving it into the task point
                    // there. (A non-`Send` argument is reported by `send_check`, on its type.)
                    moves.push(
                        quote_spanned!(binding.span()=> let #mutability #binding = #binding;),
                    );
                }
                pattern => {
                    let hidden = format_ident!("__unsync_arg{}", index, span = pattern.span());
                    let original = std::mem::replace(
                        pattern,
                        Pat::Ident(syn::PatIdent {
                            attrs: Vec::new(),
                            by_ref: None,
                            mutability: None,
                            ident: hidden.clone(),
                            subpat: None,
                        }),
                    );
                    send_checks.push(send_check(&hidden, &arg.ty));
                    moves.push(quote_spanned!(hidden.span()=> let #hidden = #hidden;));
                    moves.push(quote!(let #original = #hidden;));
                }
            },
        }
    }

    let (outer_attrs, inner_attrs): (Vec<_>, Vec<_>) = function
        .attrs
        .drain(..)
        .partition(|a| matches!(a.style, AttrStyle::Outer));
    let body = task_body(&moves, &function.block);
    let streaming =
        crate::stream::streaming(&function.sig.output).map(|s| (s.kind, s.item.clone()));
    let call = match (options.mode, &streaming) {
        (Mode::Default, Some((kind, item))) => {
            let buffer = match &options.buffer {
                Some((n, _)) => quote!(#n),
                None => quote!(#krate::__private::DEFAULT_BUFFER),
            };
            match kind {
                Kind::Iterator => quote!(
                    #krate::__private::spawn_iter::<#item, _, _>(#task, #buffer, move || #body)
                ),
                Kind::Stream => quote!(
                    #krate::__private::spawn_stream::<#item, _, _>(#task, #buffer, async move #body)
                ),
            }
        }
        (_, Some(_)) => unreachable!("refused by validate::check_streaming"),
        (Mode::Default, None) if function.sig.asyncness.is_some() => {
            // The output type is given up front so that `?` and `return` in the body infer.
            let output = if annotate { quote!(#output) } else { quote!(_) };
            quote!(#krate::__private::spawn_async::<_, #output>(#task, async move #body))
        }
        (Mode::Default | Mode::Parallel, None) => {
            let spawn = if matches!(options.mode, Mode::Parallel) {
                quote!(spawn_parallel)
            } else {
                quote!(spawn_blocking)
            };
            let arrow = annotate.then(|| quote!(-> #output));
            quote!(#krate::__private::#spawn(#task, move || #arrow #body))
        }
        (Mode::CpuBound | Mode::Remote(_), None) => {
            unreachable!("expanded by cpu_bound::expand")
        }
    };

    function.sig.asyncness = None;
    let output_span = function.sig.output.span();
    function.sig.output = match &streaming {
        Some((_, item)) => {
            syn::parse_quote_spanned!(output_span=> -> #krate::UnfinishedStream<#item>)
        }
        None => syn::parse_quote_spanned!(output_span=> -> #krate::Unfinished<#output>),
    };
    let vis = &function.vis;
    let sig = &function.sig;
    quote! {
        #(#outer_attrs)*
        #vis #sig {
            #(#inner_attrs)*
            #(#send_checks)*
            #call
        }
    }
}

/// Checks that an argument can move to another thread, with the error on its type (which it
/// names): rustc then leaves out its own error about the task, which points at the attribute.
///
/// `&` carries the span of the type's first token and the argument that of its last, so that
/// the error underlines the whole type.
fn send_check(binding: &Ident, ty: &impl ToTokens) -> TokenStream {
    let mut tokens = ty.to_token_stream().into_iter();
    let first = tokens.next().map_or_else(Span::call_site, |t| t.span());
    let last = tokens.last().map_or(first, |t| t.span());
    let binding = Ident::new(&binding.to_string(), binding.span().located_at(last));
    quote_spanned!(first=> let _: &dyn ::core::marker::Send = &#binding;)
}

/// The task's block: the moves, then the body's own statements, in braces spanned as the body's.
///
/// Not the body nested whole (`{ moves; { body } }`): rustc would warn "unnecessary braces around
/// block return value" on a one-line body, with a suggested fix that does not parse.
fn task_body(moves: &[TokenStream], body: &syn::Block) -> TokenStream {
    let statements = &body.stmts;
    let mut block = proc_macro2::Group::new(
        proc_macro2::Delimiter::Brace,
        quote!(#(#moves)* #(#statements)*),
    );
    block.set_span(body.brace_token.span.join());
    block.into_token_stream()
}

fn contains_impl_trait(ty: &Type) -> bool {
    struct Finder(bool);
    impl<'ast> syn::visit::Visit<'ast> for Finder {
        fn visit_type_impl_trait(&mut self, _: &'ast syn::TypeImplTrait) {
            self.0 = true;
        }
    }
    let mut finder = Finder(false);
    syn::visit::Visit::visit_type(&mut finder, ty);
    finder.0
}
