"""The core's vocabulary: the value types, errors, identity and provider interface every
other part of the core speaks. It imports nothing else of the core."""
