print("veerctl")
