"""What bzzlite learns from a model class, once, at ``@resource`` time: no I/O, no Tornado.

``schema`` (queryable fields, unique fields, field roles, the key shape), ``nested`` (the
embedded models, lists and references inside a document: the nested tree, ``Ref``), ``resource``
(a model served as a REST collection), ``odmantic`` (ODMantic models) and ``ids`` (document ids).
"""
