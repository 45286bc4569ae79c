"""A Plone 6 buildout for benchmarks and operator checks (no pytest
needed): Products.CMFPlone on Zope 5 with plone.recipe.zope2instance, about
230 eggs, built offline from wheels fetched from PyPI once, with its build
venv INSIDE the tree (`ROOT/venv`), the usual Plone 6 layout (issues 8, 11).

Starting, stopping and talking to the instance reuse tests/appserver.py.
"""

from pathlib import Path

from appserver import ADMIN, fetch_wheels, offline, versions_section
from support import CACHE, make_venv, run

PLONE_VERSION = "6.1.5"

# Everything the buildout needs, pinned as `pip download --only-binary=:all:
# Products.CMFPlone==6.1.5 plone.recipe.zope2instance zc.buildout==6.0.1
# "Zope<6"` resolved it from PyPI for CPython 3.11 (all wheels). Plone's own
# constraints (dist.plone.org/release/6.1.5/constraints.txt) are not
# reachable from here, so these are PyPI's newest releases that satisfy
# CMFPlone 6.1.5's requirements, frozen: the tree is the same from one fetch
# to the next. Zope 5.14.2 is the newest 5.x (Plone 6.1 runs on Zope 5).
# One pin differs from pip's pick: ZODB 6.0.1, not 6.4, whose ZConfig
# schema clashes with Zope 5.14.2's ("child name class-factory already
# used" at start-up); tests/appserver.py pins the same.
PLONE_REQUIREMENTS = [
    "AccessControl==7.5",
    "Acquisition==6.4",
    "attrs==26.1.0",
    "AuthEncoding==6.1",
    "beautifulsoup4==4.15.0",
    "borg.localrole==5.0.1",
    "BTrees==6.5",
    "certifi==2026.10.19.post1",
    "cffi==2.1.1",
    "Chameleon==4.6.0",
    "charset-normalizer==3.5.3",
    "collective.monkeypatcher==3.0.0",
    "cssselect==1.6.0",
    "DateTime==6.0",
    "diazo==2.0.6",
    "DocumentTemplate==5.4",
    "docutils==0.23",
    "ExtensionClass==6.5",
    "feedparser==6.0.14",
    "feedparser-sgmllib==2.1.0",
    "five.customerize==4.1",
    "five.intid==3.1.0",
    "five.localsitemanager==5.0",
    "icalendar==7.3.2",
    "idna==3.20",
    "jsonschema==4.26.0",
    "jsonschema-specifications==2025.9.1",
    "lxml==6.1.3",
    "lxml_html_clean==0.4.6",
    "Markdown==3.11.3",
    "Missing==5.3",
    "MultiMapping==5.1",
    "multipart==2.0.1",
    "packaging==26.4",
    "Paste==3.10.1",
    "PasteDeploy==3.1.0",
    "Persistence==5.5",
    "persistent==6.9",
    "piexif==1.1.3",
    "pillow==13.0.0",
    "pip==26.3",
    "platformdirs==4.14.9",
    "plone.alterego==3.0.0",
    "plone.app.content==5.0.1",
    "plone.app.contentlisting==4.0.0",
    "plone.app.contentmenu==4.0.0",
    "plone.app.contentrules==6.0.0",
    "plone.app.contenttypes==5.0.1",
    "plone.app.customerize==3.0.1",
    "plone.app.dexterity==5.0.2",
    "plone.app.event==6.0.1",
    "plone.app.i18n==5.0.0",
    "plone.app.intid==3.0.0",
    "plone.app.layout==6.0.2",
    "plone.app.linkintegrity==5.0.0",
    "plone.app.locales==7.0.4",
    "plone.app.lockingbehavior==3.0.0",
    "plone.app.portlets==7.0.2",
    "plone.app.querystring==3.0.0",
    "plone.app.redirector==4.0.0",
    "plone.app.registry==3.0.1",
    "plone.app.relationfield==5.0.0",
    "plone.app.textfield==4.0.2",
    "plone.app.theming==7.0.1",
    "plone.app.users==4.0.0",
    "plone.app.uuid==3.0.0",
    "plone.app.versioningbehavior==3.0.0",
    "plone.app.viewletmanager==5.0.0",
    "plone.app.vocabularies==7.0.0",
    "plone.app.workflow==6.0.0",
    "plone.app.z3cform==5.0.2",
    "plone.autoform==3.0.1",
    "plone.autoinclude==3.0.0",
    "plone.base==4.0.2",
    "plone.batching==3.0.1",
    "plone.behavior==3.0.1",
    "plone.browserlayer==4.0.0",
    "plone.caching==3.0.0",
    "plone.contentrules==4.0.0",
    "plone.dexterity==4.0.0",
    "plone.event==3.0.0",
    "plone.folder==5.0.0",
    "plone.formwidget.namedfile==4.0.0",
    "plone.formwidget.recurrence==4.0.0",
    "plone.i18n==6.0.0",
    "plone.indexer==3.0.0",
    "plone.intelligenttext==5.0.0",
    "plone.keyring==5.0.0",
    "plone.locking==4.0.0",
    "plone.memoize==4.0.0",
    "plone.namedfile==8.1.1",
    "plone.outputfilters==6.0.1",
    "plone.portlet.collection==5.0.1",
    "plone.portlet.static==5.0.0",
    "plone.portlets==4.0.0",
    "plone.protect==6.0.0",
    "plone.recipe.zope2instance==9.1.0",
    "plone.registry==3.0.1",
    "plone.resource==4.0.0",
    "plone.resourceeditor==5.0.0",
    "plone.rfc822==4.0.0",
    "plone.scale==5.1.0",
    "plone.schema==3.0.0",
    "plone.schemaeditor==5.0.1",
    "plone.session==5.1.0",
    "plone.staticresources==3.0.9",
    "plone.stringinterp==3.0.0",
    "plone.subrequest==3.0.0",
    "plone.supermodel==3.0.0",
    "plone.theme==5.0.0",
    "plone.transformchain==4.0.0",
    "plone.uuid==3.0.0",
    "plone.z3cform==3.0.0",
    "plonetheme.barceloneta==4.1.1",
    "Products.BTreeFolder2==6.0",
    "Products.CMFCore==3.9",
    "Products.CMFDiffTool==5.0.0",
    "Products.CMFDynamicViewFTI==8.0.0",
    "Products.CMFEditions==5.0.0",
    "Products.CMFPlone==6.1.5",
    "Products.CMFUid==5.0",
    "Products.DateRecurringIndex==4.0.0",
    "Products.DCWorkflow==4.0",
    "Products.ExtendedPathIndex==6.0.0",
    "Products.ExternalMethod==6.1",
    "Products.GenericSetup==5.2",
    "Products.isurlinportal==4.0.0",
    "Products.MailHost==6.1",
    "Products.MimetypesRegistry==4.0.0",
    "Products.PlonePAS==9.0.0",
    "Products.PluggableAuthService==4.2.2",
    "Products.PluginRegistry==3.1",
    "Products.PortalTransforms==5.0.0",
    "Products.PythonScripts==5.3.1",
    "Products.Sessions==6.2",
    "Products.SiteErrorLog==7.0",
    "Products.StandardCacheManagers==6.1",
    "Products.statusmessages==6.0.0",
    "Products.ZCatalog==7.4",
    "Products.ZopeVersionControl==5.1",
    "pycparser==3.12",
    "python-dateutil==4.0.0",
    "python-dotenv==1.2.4",
    "python-gettext==5.0",
    "pytz==2026.6",
    "Record==4.2",
    "referencing==0.37.0",
    "repoze.xmliter==2.0",
    "requests==2.34.2",
    "RestrictedPython==9.0",
    "roman==5.2",
    "rpds-py==2026.9.1",
    "setuptools==84.2.1",
    "simplejson==4.3.0",
    "soupsieve==4.1.3",
    "transaction==5.1",
    "typing_extensions==4.16.0",
    "tzdata==2026.6",
    "Unidecode==1.4.0",
    "urllib3==2.8.0",
    "waitress==3.0.2",
    "WebOb==1.8.11",
    "webresource==2.0.0",
    "WebTest==3.0.7",
    "wheel==0.48.0",
    "WSGIProxy2==0.5.1",
    "z3c.caching==4.0",
    "z3c.form==6.1",
    "z3c.formwidget.query==3.0",
    "z3c.objpath==3.0",
    "z3c.pt==5.2",
    "z3c.relationfield==3.1",
    "z3c.zcmlhook==3.1",
    "zc.buildout==6.0.1",
    "zc.lockfile==4.0",
    "zc.recipe.egg==6.0.0",
    "zc.relation==3.0",
    "ZConfig==4.3",
    "zdaemon==5.2.1",
    "ZEO==6.2",
    "zExceptions==6.0",
    "ZODB==6.0.1",
    "zodbpickle==4.5",
    "Zope==5.14.2",
    "zope.annotation==6.0",
    "zope.app.locales==6.0",
    "zope.browser==4.0",
    "zope.browsermenu==6.0",
    "zope.browserpage==6.0",
    "zope.browserresource==6.0",
    "zope.cachedescriptors==6.0",
    "zope.component==7.1",
    "zope.componentvocabulary==4.0",
    "zope.configuration==7.1",
    "zope.container==7.3",
    "zope.contentprovider==7.1",
    "zope.contenttype==6.0",
    "zope.copy==6.0",
    "zope.datetime==6.0",
    "zope.deferredimport==6.1.1",
    "zope.deprecation==6.0",
    "zope.dottedname==7.1",
    "zope.event==6.2",
    "zope.exceptions==6.0",
    "zope.filerepresentation==7.0",
    "zope.globalrequest==3.0",
    "zope.hookable==8.4",
    "zope.i18n==6.0",
    "zope.i18nmessageid==8.4",
    "zope.interface==8.7",
    "zope.intid==6.0",
    "zope.keyreference==7.0",
    "zope.lifecycleevent==6.0",
    "zope.location==6.0",
    "zope.pagetemplate==6.1",
    "zope.processlifetime==4.0",
    "zope.proxy==7.3",
    "zope.ptresource==6.0",
    "zope.publisher==8.1",
    "zope.ramcache==4.0",
    "zope.schema==8.1",
    "zope.security==8.4",
    "zope.sendmail==7.3",
    "zope.sequencesort==6.0",
    "zope.site==6.0",
    "zope.size==6.0",
    "zope.structuredtext==6.0",
    "zope.tal==6.0",
    "zope.tales==7.0",
    "zope.testbrowser==8.1",
    "zope.testing==6.2",
    "zope.traversing==6.0",
    "zope.viewlet==6.0",
]

BUILDOUT_CFG = """\
# A Plone 6 application server, built offline by the venv inside the tree
# (ROOT/venv): find-links is a local directory of wheels and the index an
# empty one, so nothing is fetched.
[buildout]
parts = instance zopepy buildout-script
find-links = {dists}
index = {dists}/no-index
newest = false
allow-picked-versions = false
versions = versions

[instance]
recipe = plone.recipe.zope2instance
eggs = Products.CMFPlone
user = {user}
http-address = 127.0.0.1:{port}
# No Products.TemporaryFolder in the pins: nothing to mount.
zodb-temporary-storage = off
wsgi = on

# An interpreter with the instance's full sys.path: what the import
# benchmarks (issue 11) time, without starting Zope.
[zopepy]
recipe = zc.recipe.egg
eggs = ${{instance:eggs}}
interpreter = zopepy
scripts = zopepy

[buildout-script]
recipe = zc.recipe.egg
eggs = zc.buildout
scripts = buildout

[versions]
{versions}
"""


def fetch_plone_dists(dest=None):
    """The local find-links directory for the Plone buildout (pinned,
    wheels only)."""
    return fetch_wheels(dest or CACHE / "plone-dists", PLONE_REQUIREMENTS)


def buildout_cfg(dists, port, user="%s:%s" % ADMIN):
    return BUILDOUT_CFG.format(dists=dists, port=port, user=user, versions=versions_section(PLONE_REQUIREMENTS))


def build_plone_buildout(root, dists, port):
    """Build the Plone buildout at `root` the way Plone 6 documents it: a
    venv inside the tree (`root/venv`, zc.buildout installed into it from
    the local wheels), then `root/venv/bin/buildout`, offline (`unshare
    -n`). Returns root."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    make_venv(root / "venv", dists)
    (root / "buildout.cfg").write_text(buildout_cfg(dists, port))
    run(offline([root / "venv" / "bin" / "buildout", "-c", root / "buildout.cfg"]), cwd=root)
    return root


def script_sys_path(script):
    """The sys.path entries a zc.buildout script (bin/instance, bin/zopepy)
    inserts: the quoted lines of its `sys.path[0:0] = [...]` block."""
    lines = Path(script).read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("sys.path[0:0] = ["))
    entries = []
    for line in lines[start + 1 :]:
        if line.strip() == "]":
            return entries
        entries.append(line.strip().rstrip(",").strip("'\""))
    raise AssertionError("%s: unterminated sys.path block" % script)


def egg_count(root):
    """Eggs installed by buildout under root/eggs (zc.buildout 6 puts them
    one level down, in eggs/v5/)."""
    eggs = Path(root) / "eggs"
    return sum(1 for pattern in ("*.egg", "*/*.egg") for _ in eggs.glob(pattern))
