from setuptools import setup

setup(
    name="demoapp",
    version="1.0",
    packages=["demoapp"],
    install_requires=["BTrees", "zope.interface"],
    entry_points={"console_scripts": ["demo = demoapp:main"]},
)
