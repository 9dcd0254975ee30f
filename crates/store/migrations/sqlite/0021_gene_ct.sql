-- Labs report the ORF1ab and N genes' Ct values apart (ORF1ab基因Ct值, N基因Ct值); both are
-- kept with the result, in hundredths as ct_centi is (which stays the tube's one Ct: the lab's
-- single value, or the lower of the genes').
ALTER TABLE tubes ADD COLUMN ct_orf1ab_centi INTEGER;
ALTER TABLE tubes ADD COLUMN ct_n_centi INTEGER;
ALTER TABLE tube_results ADD COLUMN ct_orf1ab_centi INTEGER;
ALTER TABLE tube_results ADD COLUMN ct_n_centi INTEGER;
