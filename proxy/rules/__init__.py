"""Traefik v3 router rules: parse once, compile to closures, route through an index.

table, errors = build_table([Route("web@file", "Host(`example.com`)", None, handler)])
handler = table.match(request)   # request: anything shaped like RequestView
"""

from proxy.rules.matcher import (
    HTTP_MATCHERS,
    MAX_USER_PRIORITY,
    CompiledRoute,
    Predicate,
    Route,
    RouterTable,
    build_table,
    compile_node,
    compile_rule,
    default_priority,
    parse_query,
    parse_rule,
)
from proxy.rules.parser import And, Matcher, MatcherDef, Node, Or, Parser, RuleError, render
from proxy.rules.request import RequestView, SimpleRequest

__all__ = [
    "HTTP_MATCHERS",
    "MAX_USER_PRIORITY",
    "And",
    "CompiledRoute",
    "Matcher",
    "MatcherDef",
    "Node",
    "Or",
    "Parser",
    "Predicate",
    "RequestView",
    "Route",
    "RouterTable",
    "RuleError",
    "SimpleRequest",
    "build_table",
    "compile_node",
    "compile_rule",
    "default_priority",
    "parse_query",
    "parse_rule",
    "render",
]
