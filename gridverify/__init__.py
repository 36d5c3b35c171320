"""gridverify: sound verification of neural AC-OPF surrogates and nonlinear computation graphs."""
