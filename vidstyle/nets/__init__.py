"""Networks: the VGG-19 feature extractor (`vidstyle.nets.vgg`) and the fast-mode transformer.

Nothing is re-exported here, so importing one network module does not import the other.
"""
